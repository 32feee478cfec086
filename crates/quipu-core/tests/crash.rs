//! Crash test: acknowledged appends survive SIGKILL, and every other append
//! is wholly present or wholly absent.
//!
//! A child process (this test binary run again, see [`crash_child`]) opens
//! a store with 64 KiB segments and fdatasync'ed acknowledgements and
//! appends from several threads as fast as it can: single- and
//! multi-stream appends of one to five events per stream, every kind of
//! expected revision over a few dozen shared streams (so conflicts happen),
//! and retries of earlier appends, which must come back as
//! `AlreadyWritten` with the original result. Each writer prints
//! `SEND <ids>` before an append and `ACK ...` with where its events landed
//! once it is acknowledged. The parent kills the child with SIGKILL at a
//! random moment (mostly while it appends, sometimes while it starts up
//! and recovers the store), reopens the store and checks, against
//! everything any child ever said:
//!
//! - every acknowledged event is readable by id, in the stream, at the
//!   revision and at the position its acknowledgement named;
//! - every append sent, acknowledged or not, is wholly present or wholly
//!   absent;
//! - `$all` is dense from position 0, each stream's revisions are dense
//!   from 0, and reading a stream gives exactly its events in `$all`;
//! - the reopened store takes a new append.
//!
//! The next child then opens the same directory, so recoveries pile up
//! across rounds and segment boundaries.
//!
//! `QUIPU_CRASH_ROUNDS` sets the number of kills (default 25);
//! `QUIPU_CRASH_SEED` replays the kill schedule of a failed run (the
//! interleaving of the writer threads cannot be replayed). After a failure
//! the data directory is kept and its path printed.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::ops::RangeInclusive;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use common::{all_events, segment_paths, stream};
use quipu_core::{
    AppendOutcome, AppendRequest, AppendResult, Direction, EventId, EventType, ExpectedRevision, Options,
    ProposedEvent, RecordedEvent, Revision, Store, StreamName, StreamWrite, SyncMode, Tag,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// Data directory of the child; the child test does nothing without it.
const CHILD_DIR_VAR: &str = "QUIPU_CRASH_CHILD_DIR";
/// Seed of the child's writers.
const CHILD_SEED_VAR: &str = "QUIPU_CRASH_CHILD_SEED";
/// Number of kills.
const ROUNDS_VAR: &str = "QUIPU_CRASH_ROUNDS";
/// Seed of the parent's kill schedule.
const SEED_VAR: &str = "QUIPU_CRASH_SEED";

const ROUNDS_DEFAULT: u64 = 25;
/// How long a child appends, after it has opened the store, before the kill.
const APPENDING_MS: RangeInclusive<u64> = 50..=400;
/// One kill in this many lands while the child is starting up, often
/// while it recovers the store.
const STARTUP_KILL_ONE_IN: u32 = 5;
/// How long after the spawn a startup kill lands.
const STARTUP_MS: RangeInclusive<u64> = 0..=100;
/// Patience with a child that has not opened the store yet; it is killed
/// then all the same, and nothing is asserted about time.
const READY_WAIT: Duration = Duration::from_secs(60);
const WRITERS: usize = 4;
/// Few enough that writers often race for the same stream.
const STREAMS: usize = 50;
/// Appends a writer remembers for retries.
const RETRIES_REMEMBERED: usize = 32;
const EVENT_TYPES: [&str; 3] = ["Opened", "Deposited", "Withdrawn"];
/// The stream the parent appends to after each reopen; children never
/// touch it.
const PARENT_STREAM: &str = "crash-parent";
const READ_PAGE: usize = 1000;
/// Events acknowledged in earlier rounds that a round reads back by id.
const EARLIER_READ_BY_ID_MAX: usize = 2000;
/// The signal `Child::kill` sends on Unix; 9 everywhere.
const SIGKILL: i32 = 9;

/// Small segments so segments roll over and recovery crosses their
/// boundaries; acknowledgements wait for fdatasync (the default, stated
/// because the test is about it).
fn store_options() -> Options {
    Options { segment_size_bytes: 64 * 1024, sync: SyncMode::Fsync, index_memtable_entries: 500, ..Options::default() }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")))
}

fn account(index: usize) -> StreamName {
    stream(&format!("acct-{index}"))
}

/// An event whose data names its own id, so a read can tell that the
/// payload belongs to the event it came with.
fn event(event_type: &str, tag: &str, pad_bytes: usize) -> ProposedEvent {
    let mut event = ProposedEvent::new(EventType::new(event_type).expect("valid type"), Vec::new());
    event.data = format!(r#"{{"id":"{}","pad":"{}"}}"#, event.id, "x".repeat(pad_bytes)).into_bytes();
    event.tags = vec![Tag::new(tag).expect("valid tag")];
    event
}

fn ids_text(ids: impl Iterator<Item = EventId>) -> String {
    ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

fn parse_ids(text: &str) -> Vec<EventId> {
    text.split(',').map(|id| EventId::parse(id).unwrap_or_else(|e| panic!("the child printed {text:?}: {e}"))).collect()
}

// ---- the child --------------------------------------------------------------

/// The child process of [`acknowledged_appends_survive_sigkill`]: appends
/// from [`WRITERS`] threads until it is killed. Run alone it does nothing.
#[test]
#[ignore = "child process of crash tests; run by the parent"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else { return };
    let seed = env_u64(CHILD_SEED_VAR).unwrap_or(0);
    // libtest has printed `test crash_child ... ` without a newline.
    say("");
    let store = match Store::open(&dir, store_options()) {
        Ok(store) => Arc::new(store),
        Err(error) => return say(&format!("BUG the child cannot open the store: {error}")),
    };
    say("READY");
    let writers: Vec<_> = (0..WRITERS)
        .map(|number| {
            let writer = Writer::new(number, Arc::clone(&store), seed);
            std::thread::spawn(move || writer.run())
        })
        .collect();
    // Writers stop only after reporting a BUG.
    for writer in writers {
        if writer.join().is_err() {
            say("BUG a writer thread panicked");
        }
    }
}

/// Prints one whole line with one write, so lines of different writers
/// never interleave and a kill cuts at most the last line.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // Nobody to tell if the parent is gone.
    let _ = out.write_all(format!("{line}\n").as_bytes()).and_then(|()| out.flush());
}

/// An append a writer made, for retrying it later.
struct Sent {
    request: AppendRequest,
    /// The result once the append was written; `None` after a conflict.
    result: Option<AppendResult>,
}

/// One appending thread of the child.
struct Writer {
    number: usize,
    store: Arc<Store>,
    rng: StdRng,
    /// Last revision of each stream as this writer last learned it
    /// (`None`: no such stream); stale when another writer got there first.
    known: HashMap<StreamName, Option<Revision>>,
    /// Recent appends, oldest first.
    sent: Vec<Sent>,
}

impl Writer {
    fn new(number: usize, store: Arc<Store>, seed: u64) -> Writer {
        let rng = StdRng::seed_from_u64(seed.wrapping_mul(WRITERS as u64).wrapping_add(number as u64));
        Writer { number, store, rng, known: HashMap::new(), sent: Vec::new() }
    }

    /// Appends until something breaks a promise, then says so and stops.
    fn run(mut self) {
        loop {
            if let Err(problem) = self.append_once() {
                return say(&format!("BUG writer {}: {problem}", self.number));
            }
        }
    }

    fn append_once(&mut self) -> Result<(), String> {
        let retry_of =
            (!self.sent.is_empty() && self.rng.random_ratio(1, 8)).then(|| self.rng.random_range(0..self.sent.len()));
        let (request, earlier) = match retry_of.and_then(|i| self.sent.get(i)) {
            Some(sent) => (sent.request.clone(), sent.result.clone()),
            None => (self.new_request()?, None),
        };
        let ids = ids_text(request.event_ids());
        say(&format!("SEND {ids}"));
        let outcome = self.store.append(request.clone()).map_err(|e| format!("append {ids} failed: {e}"))?;
        let result = match (outcome, earlier) {
            (AppendOutcome::Written(result), None) => {
                say(&ack_line(&request, &result)?);
                self.learn(&result);
                Some(result)
            }
            (AppendOutcome::AlreadyWritten(result), Some(earlier)) if result == earlier => {
                say(&ack_line(&request, &result)?);
                return Ok(());
            }
            (AppendOutcome::Conflict(_), None) => {
                say(&format!("CONFLICT {ids}"));
                self.refresh(&request)?;
                None
            }
            (outcome, earlier) => {
                return Err(format!("append {ids} returned {outcome:?}, its earlier result was {earlier:?}"));
            }
        };
        match retry_of.and_then(|i| self.sent.get_mut(i)) {
            Some(sent) => sent.result = result,
            None => self.remember(Sent { request, result }),
        }
        Ok(())
    }

    fn remember(&mut self, sent: Sent) {
        if self.sent.len() == RETRIES_REMEMBERED {
            self.sent.remove(0);
        }
        self.sent.push(sent);
    }

    /// One to three distinct streams (mostly one), one to five events each.
    fn new_request(&mut self) -> Result<AppendRequest, String> {
        let stream_count = if self.rng.random_ratio(1, 3) { self.rng.random_range(2..=3) } else { 1 };
        let mut streams: Vec<usize> = Vec::with_capacity(stream_count);
        while streams.len() < stream_count {
            let candidate = self.rng.random_range(0..STREAMS);
            if !streams.contains(&candidate) {
                streams.push(candidate);
            }
        }
        let mut writes = Vec::with_capacity(stream_count);
        for index in streams {
            let name = account(index);
            let expected = self.expectation(&name)?;
            let events = (0..self.rng.random_range(1..=5)).map(|_| self.event()).collect();
            writes.push(StreamWrite { stream: name, expected, events });
        }
        Ok(AppendRequest { writes, condition: None })
    }

    /// Mostly what the writer believes (so most appends succeed and the
    /// streams grow), sometimes `Any`, `NoStream` or `Exists` regardless.
    fn expectation(&mut self, stream: &StreamName) -> Result<ExpectedRevision, String> {
        Ok(match self.rng.random_range(0..10) {
            0 => ExpectedRevision::Any,
            1 => ExpectedRevision::NoStream,
            2 => ExpectedRevision::Exists,
            _ => match self.last_revision(stream)? {
                Some(revision) => ExpectedRevision::Exact(revision),
                None => ExpectedRevision::NoStream,
            },
        })
    }

    fn last_revision(&mut self, stream: &StreamName) -> Result<Option<Revision>, String> {
        if let Some(known) = self.known.get(stream) {
            return Ok(*known);
        }
        self.lookup(stream)
    }

    fn lookup(&mut self, stream: &StreamName) -> Result<Option<Revision>, String> {
        let info = self.store.stream_info(stream).map_err(|e| format!("stream_info({stream}) failed: {e}"))?;
        self.known.insert(stream.clone(), info.last_revision);
        Ok(info.last_revision)
    }

    fn learn(&mut self, result: &AppendResult) {
        for placed in &result.streams {
            self.known.insert(placed.stream.clone(), Some(placed.last_revision));
        }
    }

    fn refresh(&mut self, request: &AppendRequest) -> Result<(), String> {
        for write in &request.writes {
            self.lookup(&write.stream)?;
        }
        Ok(())
    }

    fn event(&mut self) -> ProposedEvent {
        let event_type = EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())];
        let pad_bytes = self.rng.random_range(0..200);
        event(event_type, &format!("writer:{}", self.number), pad_bytes)
    }
}

/// `ACK <first position> <last position> <stream>:<first revision>:<ids> ...`,
/// one `stream:revision:ids` section per stream write, in request order.
fn ack_line(request: &AppendRequest, result: &AppendResult) -> Result<String, String> {
    if request.writes.len() != result.streams.len() {
        return Err(format!("{} stream writes, but the result lists {:?}", request.writes.len(), result.streams));
    }
    let mut line = format!("ACK {} {}", result.first_position, result.last_position);
    for (write, placed) in request.writes.iter().zip(&result.streams) {
        let ids = ids_text(write.events.iter().map(|e| e.id));
        line.push_str(&format!(" {}:{}:{ids}", placed.stream, placed.first_revision));
    }
    Ok(line)
}

// ---- what the child said ---------------------------------------------------

/// An acknowledged append as the child reported it.
struct Ack {
    first_position: u64,
    last_position: u64,
    /// Per stream write: stream, revision of its first event, event ids.
    writes: Vec<(String, u64, Vec<EventId>)>,
}

impl Ack {
    fn parse(text: &str) -> Ack {
        let mut words = text.split(' ');
        let mut number = || -> u64 {
            let word = words.next().unwrap_or_default();
            word.parse().unwrap_or_else(|_| panic!("ACK {text}: {word:?} is not a position"))
        };
        let (first_position, last_position) = (number(), number());
        let writes = words
            .map(|section| {
                let mut parts = section.splitn(3, ':');
                let (Some(name), Some(revision), Some(ids)) = (parts.next(), parts.next(), parts.next()) else {
                    panic!("ACK {text}: {section:?} is not stream:revision:ids");
                };
                let revision = revision.parse().unwrap_or_else(|_| panic!("ACK {text}: bad revision {revision:?}"));
                (name.to_owned(), revision, parse_ids(ids))
            })
            .collect();
        Ack { first_position, last_position, writes }
    }
}

/// Everything one child said before it was killed.
#[derive(Default)]
struct Transcript {
    /// The child opened the store.
    ready: bool,
    /// Event ids of each append sent, in the order sent.
    sent: Vec<Vec<EventId>>,
    acked: Vec<Ack>,
    conflicts: usize,
    /// Broken promises the child noticed itself.
    bugs: Vec<String>,
}

impl Transcript {
    /// Reads the child's lines until it dies; signals `ready` when it has
    /// opened the store.
    fn read(stdout: ChildStdout, ready: Sender<()>) -> Transcript {
        let mut reader = BufReader::new(stdout);
        let mut transcript = Transcript::default();
        let mut line = String::new();
        loop {
            line.clear();
            if !matches!(reader.read_line(&mut line), Ok(1..)) {
                return transcript;
            }
            // A line the kill cut short has no newline and proves nothing.
            let Some(complete) = line.strip_suffix('\n') else { return transcript };
            transcript.take(complete);
            if complete == "READY" {
                // The parent may have stopped waiting.
                let _ = ready.send(());
            }
        }
    }

    fn take(&mut self, line: &str) {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "READY" => self.ready = true,
            "SEND" => self.sent.push(parse_ids(rest)),
            "ACK" => self.acked.push(Ack::parse(rest)),
            "CONFLICT" => self.conflicts += 1,
            "BUG" => self.bugs.push(rest.to_owned()),
            _ => {} // libtest's own lines
        }
    }

    /// Appends sent but neither acknowledged nor refused when the child died.
    fn in_flight(&self) -> usize {
        self.sent.len().saturating_sub(self.acked.len() + self.conflicts)
    }
}

// ---- the parent -------------------------------------------------------------

/// How one child ended.
struct ChildRun {
    transcript: Transcript,
    running_at_kill: bool,
    status: ExitStatus,
}

/// When a round's kill lands.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the spawn, whatever the child is doing.
    Startup(Duration),
    /// This long after the child has opened the store.
    Appending(Duration),
}

impl KillAt {
    fn random(rng: &mut StdRng) -> KillAt {
        if rng.random_ratio(1, STARTUP_KILL_ONE_IN) {
            KillAt::Startup(Duration::from_millis(rng.random_range(STARTUP_MS)))
        } else {
            KillAt::Appending(Duration::from_millis(rng.random_range(APPENDING_MS)))
        }
    }
}

/// The running test binary. On Linux `/proc/self/exe`, which stays this
/// very file even when a concurrent `cargo test` replaces the binary at
/// its path.
fn this_binary() -> PathBuf {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return proc_self;
    }
    std::env::current_exe().expect("the test binary's path")
}

/// Runs a child on `dir` and SIGKILLs it at `kill_at`.
fn run_child(dir: &Path, child_seed: u64, kill_at: KillAt) -> ChildRun {
    let mut child = Command::new(this_binary())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_SEED_VAR, child_seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (ready_sender, ready) = channel();
    let reader = std::thread::spawn(move || Transcript::read(stdout, ready_sender));
    match kill_at {
        KillAt::Startup(after) => std::thread::sleep(after),
        KillAt::Appending(after) => {
            // A child that dies or dawdles before it is ready is killed
            // now; check_child tells which.
            if ready.recv_timeout(READY_WAIT).is_ok() {
                std::thread::sleep(after);
            }
        }
    }
    let running_at_kill = child.try_wait().expect("polling the child").is_none();
    // Child::kill sends SIGKILL on Unix; a child that already exited is
    // reported by check_child.
    let _ = child.kill();
    let status = child.wait().expect("reaping the child");
    let transcript = reader.join().expect("the transcript reader");
    ChildRun { transcript, running_at_kill, status }
}

/// Names a round in failure messages, with what is needed to look into it.
struct Round<'a> {
    number: u64,
    last: bool,
    seed: u64,
    dir: &'a Path,
}

impl fmt::Display for Round<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {} ({SEED_VAR}={}, data in {})", self.number, self.seed, self.dir.display())
    }
}

/// Where an acknowledged event must be.
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    stream: String,
    revision: u64,
    position: u64,
}

/// What the store must hold, from everything every child said.
#[derive(Default)]
struct Expected {
    placements: HashMap<EventId, Placement>,
    /// Every acknowledged event id once, in the order acknowledged.
    acked: Vec<EventId>,
    /// How many of `acked` came before the latest round.
    acked_before_round: usize,
    /// Event ids of every append ever sent.
    sent: Vec<Vec<EventId>>,
}

impl Expected {
    fn add(&mut self, transcript: Transcript, round: &Round) {
        self.acked_before_round = self.acked.len();
        for ack in &transcript.acked {
            self.add_ack(ack, round);
        }
        self.sent.extend(transcript.sent);
    }

    fn add_ack(&mut self, ack: &Ack, round: &Round) {
        let mut position = ack.first_position;
        for (stream, first_revision, ids) in &ack.writes {
            for (revision, id) in (*first_revision..).zip(ids) {
                let placement = Placement { stream: stream.clone(), revision, position };
                if let Some(earlier) = self.placements.get(id) {
                    assert_eq!(earlier, &placement, "{round}: event {id} was acknowledged at two places");
                }
                if self.placements.insert(*id, placement).is_none() {
                    self.acked.push(*id);
                }
                position += 1;
            }
        }
        assert_eq!(
            position,
            ack.last_position + 1,
            "{round}: an acknowledgement from position {} to {} holds {} events",
            ack.first_position,
            ack.last_position,
            position - ack.first_position
        );
    }

    /// Acknowledged events to read back by id: all of them in the last
    /// round or while they are few, else the latest round's and a random
    /// sample of the earlier ones, so rounds do not slow down as the store
    /// grows. (`$all` is checked for all of them in every round.)
    fn to_read_by_id(&self, round: &Round) -> Vec<EventId> {
        let (earlier, latest) = self.acked.split_at(self.acked_before_round);
        if round.last || earlier.len() <= EARLIER_READ_BY_ID_MAX {
            return self.acked.clone();
        }
        let mut rng = StdRng::seed_from_u64(round.seed ^ round.number);
        let mut ids: Vec<EventId> = earlier.choose_multiple(&mut rng, EARLIER_READ_BY_ID_MAX).copied().collect();
        ids.extend_from_slice(latest);
        ids
    }
}

/// `$all` is dense from 0, holds each id once, and every payload names
/// its own event; returns the events by id.
fn check_all<'a>(store: &Store, events: &'a [RecordedEvent], round: &Round) -> HashMap<EventId, &'a RecordedEvent> {
    let mut by_id = HashMap::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.position.0, index as u64, "{round}: $all has a gap or a repeat before {}", event.id);
        let data = String::from_utf8_lossy(&event.data);
        assert!(data.contains(&event.id.to_string()), "{round}: event {} carries the data {data:?}", event.id);
        if let Some(other) = by_id.insert(event.id, event) {
            panic!("{round}: event {} is in $all twice, at {} and {}", event.id, other.position, event.position);
        }
    }
    let last = events.last().map(|e| e.position);
    assert_eq!(store.last_position(), last, "{round}: last_position disagrees with $all");
    by_id
}

/// Every acknowledged event is in `$all` where its acknowledgement said,
/// and reading it by id finds it there (see [`Expected::to_read_by_id`]).
fn check_acknowledged(store: &Store, by_id: &HashMap<EventId, &RecordedEvent>, expected: &Expected, round: &Round) {
    for (id, want) in &expected.placements {
        let Some(found) = by_id.get(id) else {
            panic!("{round}: acknowledged event {id} is missing; it was acknowledged as {want:?}");
        };
        let found_at =
            Placement { stream: found.stream.to_string(), revision: found.revision.0, position: found.position.0 };
        assert_eq!(&found_at, want, "{round}: acknowledged event {id} is not where its acknowledgement said");
    }
    for id in expected.to_read_by_id(round) {
        let read = store.read_event(&id).unwrap_or_else(|e| panic!("{round}: read_event({id}) failed: {e}"));
        assert_eq!(read.as_ref(), by_id.get(&id).copied(), "{round}: read_event({id}) disagrees with $all");
    }
}

/// No append is half-present.
fn check_atomic(by_id: &HashMap<EventId, &RecordedEvent>, expected: &Expected, round: &Round) {
    for ids in &expected.sent {
        let present: Vec<&EventId> = ids.iter().filter(|id| by_id.contains_key(id)).collect();
        assert!(
            present.is_empty() || present.len() == ids.len(),
            "{round}: append {ids:?} is half-present: only {present:?} are in the store"
        );
    }
}

/// Revisions are dense per stream, and reading a stream (and its info)
/// agrees with `$all`.
fn check_streams(store: &Store, events: &[RecordedEvent], round: &Round) {
    let mut streams: HashMap<&StreamName, Vec<&RecordedEvent>> = HashMap::new();
    for event in events {
        let stream_events = streams.entry(&event.stream).or_default();
        let want = stream_events.len() as u64;
        assert_eq!(
            event.revision.0, want,
            "{round}: {} has revision {} where {want} is due",
            event.stream, event.revision
        );
        stream_events.push(event);
    }
    for (name, from_all) in &streams {
        let read = read_stream(store, name, round);
        assert!(read.iter().eq(from_all.iter().copied()), "{round}: reading {name} disagrees with $all");
        let info = store.stream_info(name).unwrap_or_else(|e| panic!("{round}: stream_info({name}) failed: {e}"));
        assert_eq!(info.last_revision, from_all.last().map(|e| e.revision), "{round}: stream_info({name})");
    }
    for name in (0..STREAMS).map(account).filter(|name| !streams.contains_key(name)) {
        let info = store.stream_info(&name).unwrap_or_else(|e| panic!("{round}: stream_info({name}) failed: {e}"));
        assert_eq!(info.last_revision, None, "{round}: {name} has no events in $all, but stream_info says {info:?}");
    }
}

fn read_stream(store: &Store, name: &StreamName, round: &Round) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = events.last().map(|e| e.revision.next());
        let page = store
            .read_stream(name, from, Direction::Forwards, READ_PAGE)
            .unwrap_or_else(|e| panic!("{round}: reading {name} failed: {e}"));
        let full = page.len() == READ_PAGE;
        events.extend(page);
        if !full {
            return events;
        }
    }
}

/// The reopened store takes an append, right after what survived.
fn append_after_crash(store: &Store, events: &[RecordedEvent], round: &Round) {
    let name = stream(PARENT_STREAM);
    let last = events.iter().rev().find(|e| e.stream == name).map(|e| e.revision);
    let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
    let request = AppendRequest::to_stream(name, expected, vec![event("Verified", "parent", 0)]);
    let outcome = store.append(request);
    let Ok(AppendOutcome::Written(result)) = outcome else {
        panic!("{round}: the reopened store did not take a new append: {outcome:?}");
    };
    let revision = last.map_or(0, |r| r.0 + 1);
    let placed = (result.first_position.0, result.streams.first().map(|s| s.first_revision.0));
    assert_eq!(placed, (events.len() as u64, Some(revision)), "{round}: the parent's append landed elsewhere");
}

/// Opens the store after a kill and checks every promise; returns the
/// number of events it holds.
fn verify(expected: &Expected, round: &Round) -> usize {
    let store = Store::open(round.dir, store_options())
        .unwrap_or_else(|e| panic!("{round}: the store does not open after SIGKILL: {e}"));
    let events = all_events(&store);
    let by_id = check_all(&store, &events, round);
    check_acknowledged(&store, &by_id, expected, round);
    check_atomic(&by_id, expected, round);
    check_streams(&store, &events, round);
    append_after_crash(&store, &events, round);
    store.close().unwrap_or_else(|e| panic!("{round}: closing the store failed: {e}"));
    events.len()
}

/// The test's data directory: removed after a pass, kept after a failure.
struct DataDir(tempfile::TempDir);

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!("crash test: data directory kept for inspection at {}", self.0.path().display());
        }
    }
}

/// Totals over all rounds, for the summary and the sanity checks.
#[derive(Default)]
struct Totals {
    sent: usize,
    acked: usize,
    conflicts: usize,
    in_flight: usize,
    rounds_ready: usize,
}

impl Totals {
    fn add(&mut self, transcript: &Transcript) {
        self.sent += transcript.sent.len();
        self.acked += transcript.acked.len();
        self.conflicts += transcript.conflicts;
        self.in_flight += transcript.in_flight();
        self.rounds_ready += usize::from(transcript.ready);
    }
}

fn time_seed() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_nanos() as u64
}

/// The child was killed while it ran, and noticed nothing wrong itself.
fn check_child(run: &ChildRun, round: &Round) {
    let bugs = &run.transcript.bugs;
    assert!(bugs.is_empty(), "{round}: the child reported broken promises: {bugs:#?}");
    assert!(run.running_at_kill, "{round}: the child exited on its own before the kill ({})", run.status);
    assert_eq!(run.status.signal(), Some(SIGKILL), "{round}: the child did not die of SIGKILL: {}", run.status);
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let rounds = env_u64(ROUNDS_VAR).unwrap_or(ROUNDS_DEFAULT);
    let seed = env_u64(SEED_VAR).unwrap_or_else(time_seed);
    let data = DataDir(tempfile::tempdir().expect("a temporary directory"));
    println!("crash test: {rounds} rounds, {SEED_VAR}={seed}, data in {}", data.0.path().display());
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut expected = Expected::default();
    let mut totals = Totals::default();
    let mut events = 0;
    for number in 0..rounds {
        let round = Round { number, last: number + 1 == rounds, seed, dir: data.0.path() };
        let kill_at = KillAt::random(&mut rng);
        let run = run_child(round.dir, rng.random(), kill_at);
        check_child(&run, &round);
        let said = &run.transcript;
        let line = format!(
            "{kill_at:?}: {} sent, {} acked, {} in flight",
            said.sent.len(),
            said.acked.len(),
            said.in_flight()
        );
        totals.add(said);
        expected.add(run.transcript, &round);
        events = verify(&expected, &round);
        println!("crash test: round {number}, killed at {line}; {events} events in the store");
    }
    println!(
        "crash test: {rounds} kills ({} after the child opened the store) in {:.1?}; {} appends sent, {} acknowledged, \
         {} conflicts, {} in flight at a kill; {events} events in {} segments",
        totals.rounds_ready,
        started.elapsed(),
        totals.sent,
        totals.acked,
        totals.conflicts,
        totals.in_flight,
        segment_paths(data.0.path()).len(),
    );
    assert!(totals.acked > 0, "no child acknowledged an append in {rounds} rounds: the test checked nothing");
    assert!(totals.in_flight > 0, "no kill caught an append in flight in {rounds} rounds");
}
