//! Who gets which event of a consumer group, and when an event is done.
//!
//! A synchronous state machine with time as an input, so every rule is
//! tested without a runtime. What it promises:
//!
//! - **Per-stream order** (with [`Strategy::PerStream`], the default). At
//!   most one event of a stream is out at a time (delivered, waiting for a
//!   retry, or being parked); the stream's next event goes out only once
//!   that one is acknowledged, skipped or parked. So a stream's events
//!   reach consumers in order, across retries and across members joining
//!   and leaving. The other strategies give up this order for throughput:
//!   many events of one stream may be out at once (see [`Strategy`]).
//! - **Affinity** (with [`Strategy::PerStream`] and [`Strategy::Pinned`]).
//!   A stream goes to the member that rendezvous hashing picks among the
//!   current members (by member name, so a member that reconnects under
//!   its name gets its streams back); a join or a leave moves only the
//!   streams of the members concerned. A stream whose event is out stays
//!   with its member until that event is done.
//! - **Bounded in-flight.** A member never holds more than its
//!   `max_in_flight` events; the others wait in their streams' queues.
//! - **Retries and parking.** A negative acknowledgement with retry, or a
//!   delivery not acknowledged within the message timeout, makes the
//!   event due again after an exponential backoff; after `max_retries`
//!   retries it is parked instead. A member that goes away hands its
//!   events back (a disconnect counts as a failed attempt, a clean leave
//!   does not).
//! - **Checkpoint.** [`Dispatcher::watermark`] is the position of the
//!   oldest event that is not done: everything before it was acknowledged,
//!   skipped or durably parked, so a restart from it loses nothing (and
//!   redelivers at most what was done after it).
//!
//! Replayed parked events travel the same way but do not move the
//! watermark; [`Dispatcher::parked_watermark`] tracks them by their
//! revision in the parked stream.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quipu_core::{Position, RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};

/// A member's id, unique within the server's life.
pub type MemberId = u64;

/// How a group retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Retries before an event is parked (0: park on the first failure).
    pub max_retries: u32,
    /// How long a delivered event may stay unacknowledged.
    pub message_timeout: Duration,
    /// Backoff before the first retry; doubles for each further one.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl Tuning {
    /// Wait before retry number `retries` (1 for the first).
    #[must_use]
    pub fn backoff(&self, retries: u32) -> Duration {
        let doublings = retries.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

/// How a group shares its events among its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One event of a stream out at a time, streams pinned to members:
    /// each stream's events are handled in order.
    #[default]
    PerStream,
    /// No order: each event goes to the member with the most room.
    RoundRobin,
    /// No order: each event goes to the longest-standing member with room.
    DispatchToSingle,
    /// No order, but streams pinned to members: a stream's events all go
    /// to the member rendezvous hashing picks, many at once.
    Pinned,
}

impl Strategy {
    /// Whether a stream waits for its event out before sending the next.
    fn ordered(self) -> bool {
        self == Strategy::PerStream
    }

    /// Whether streams are pinned to members by hashing.
    fn pinned(self) -> bool {
        matches!(self, Strategy::PerStream | Strategy::Pinned)
    }
}

/// What a consumer answers about an event it could not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver it again after the backoff (parked once retries run out).
    Retry,
    /// Park it now.
    Park,
    /// Give up on it: it counts as done.
    Skip,
}

/// One event handed to a member.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub event: Arc<RecordedEvent>,
    /// Earlier failed attempts.
    pub retries: u32,
}

/// An event to append to the group's parked stream; report the append
/// with [`Dispatcher::parked`].
#[derive(Debug, Clone)]
pub struct ParkOrder {
    /// The event.
    pub event: Arc<RecordedEvent>,
    /// Failed attempts.
    pub retries: u32,
    /// Why, in words.
    pub reason: String,
}

/// Counts for one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStats {
    /// Its name.
    pub name: String,
    /// Events it holds now.
    pub in_flight: usize,
    /// Most it may hold.
    pub max_in_flight: usize,
    /// Events waiting in the queues of the streams hashed to it.
    pub queued: usize,
    /// Deliveries so far.
    pub delivered: u64,
    /// Acknowledgements so far.
    pub acked: u64,
    /// Negative acknowledgements and timeouts so far.
    pub failed: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    event: Arc<RecordedEvent>,
    retries: u32,
    /// For a replayed parked event: its revision in the parked stream.
    parked_revision: Option<u64>,
}

impl Entry {
    fn position(&self) -> Position {
        self.event.position
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    max_in_flight: usize,
    stats: MemberStats,
}

#[derive(Debug)]
struct InFlight {
    entry: Entry,
    member: MemberId,
    deadline: Instant,
}

/// Events that go out one at a time: a stream's (in order) or, when the
/// strategy keeps no order, a single event's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lane {
    Stream(StreamName),
    Event(Position),
}

#[derive(Debug, Default)]
struct StreamQueue {
    events: VecDeque<Entry>,
    /// Position of the stream's event that is out, if one is.
    out: Option<Position>,
}

/// Delivery state of one group.
#[derive(Debug)]
pub struct Dispatcher {
    tuning: Tuning,
    strategy: Strategy,
    members: BTreeMap<MemberId, Member>,
    queues: HashMap<Lane, StreamQueue>,
    /// Lanes with queued events and none out, by their first event's
    /// position: the order deliveries go out in.
    ready: BTreeMap<Position, Lane>,
    in_flight: HashMap<Position, InFlight>,
    deadlines: BTreeSet<(Instant, Position)>,
    retrying: BTreeMap<(Instant, Position), Entry>,
    parking: HashMap<Position, Entry>,
    /// Positions of feed events not done yet.
    unfinished: BTreeSet<Position>,
    /// Revisions (in the parked stream) of replayed events not done yet.
    unfinished_parked: BTreeSet<u64>,
    /// Positions of replayed events not done yet.
    replaying: std::collections::HashSet<Position>,
    /// Position after the last event the feed handed in.
    fed_to: Position,
    /// Parked-stream revision after the last replayed event handed in.
    parked_fed_to: u64,
}

impl Dispatcher {
    /// An empty dispatcher whose feed starts at `from` and whose parked
    /// replay has handed in everything before `parked_from`.
    #[must_use]
    pub fn new(tuning: Tuning, from: Position, parked_from: u64) -> Dispatcher {
        Dispatcher {
            tuning,
            strategy: Strategy::PerStream,
            members: BTreeMap::new(),
            queues: HashMap::new(),
            ready: BTreeMap::new(),
            in_flight: HashMap::new(),
            deadlines: BTreeSet::new(),
            retrying: BTreeMap::new(),
            parking: HashMap::new(),
            unfinished: BTreeSet::new(),
            unfinished_parked: BTreeSet::new(),
            replaying: std::collections::HashSet::new(),
            fed_to: from,
            parked_fed_to: parked_from,
        }
    }

    /// The same dispatcher sharing events by `strategy` (before any event
    /// comes in).
    #[must_use]
    pub fn sharing(mut self, strategy: Strategy) -> Dispatcher {
        assert!(self.queues.is_empty() && self.in_flight.is_empty(), "the strategy is set before events come in");
        self.strategy = strategy;
        self
    }

    /// Replaces the retry settings; events already waiting keep their due
    /// times.
    pub fn retune(&mut self, tuning: Tuning) {
        self.tuning = tuning;
    }

    /// Adds the feed's next event; feed events come in position order.
    pub fn push(&mut self, event: RecordedEvent) {
        assert!(event.position >= self.fed_to, "the feed moves forwards");
        self.fed_to = event.position.next();
        self.unfinished.insert(event.position);
        self.enqueue_back(Entry { event: Arc::new(event), retries: 0, parked_revision: None });
    }

    /// Adds a parked event to deliver again; `revision` is its place in
    /// the parked stream, and they come in revision order. An event that
    /// is already on its way (parked twice, replayed twice) is not added
    /// a second time.
    pub fn push_parked(&mut self, event: RecordedEvent, revision: u64) {
        self.skip_parked(revision);
        if self.unfinished.contains(&event.position) || !self.replaying.insert(event.position) {
            return;
        }
        self.unfinished_parked.insert(revision);
        self.enqueue_back(Entry { event: Arc::new(event), retries: 0, parked_revision: Some(revision) });
    }

    /// Notes that the parked stream was read up to `revision` (inclusive)
    /// where nothing is to be replayed (another group's record).
    pub fn skip_parked(&mut self, revision: u64) {
        self.parked_fed_to = self.parked_fed_to.max(revision + 1);
    }

    /// Events handed in and not done: what counts against read-ahead.
    #[must_use]
    pub fn unfinished(&self) -> usize {
        self.unfinished.len() + self.unfinished_parked.len()
    }

    /// Position of the oldest feed event not done; everything before it is
    /// done.
    #[must_use]
    pub fn watermark(&self) -> Position {
        self.unfinished.first().copied().unwrap_or(self.fed_to)
    }

    /// Parked-stream revision of the oldest replayed event not done.
    #[must_use]
    pub fn parked_watermark(&self) -> u64 {
        self.unfinished_parked.first().copied().unwrap_or(self.parked_fed_to)
    }

    /// Position after the last event the feed handed in.
    #[must_use]
    pub fn fed_to(&self) -> Position {
        self.fed_to
    }

    /// Adds a member that may hold `max_in_flight` events (at least 1).
    pub fn join(&mut self, id: MemberId, name: &str, max_in_flight: usize) {
        let max_in_flight = max_in_flight.max(1);
        let stats = MemberStats { name: name.to_string(), max_in_flight, ..MemberStats::default() };
        let previous = self.members.insert(id, Member { name: name.to_string(), max_in_flight, stats });
        assert!(previous.is_none(), "member ids are unique");
    }

    /// Changes a member's bound (at least 1); events it holds beyond a
    /// lower bound stay with it, and it gets no more until it is under.
    pub fn set_max_in_flight(&mut self, id: MemberId, max_in_flight: usize) {
        if let Some(member) = self.members.get_mut(&id) {
            member.max_in_flight = max_in_flight.max(1);
            member.stats.max_in_flight = member.max_in_flight;
        }
    }

    /// Removes a member and hands its events back. When it `failed` (it
    /// disconnected), each counts as a failed attempt. Returns events whose
    /// retries ran out, to park.
    pub fn leave(&mut self, id: MemberId, failed: bool) -> Vec<ParkOrder> {
        if self.members.remove(&id).is_none() {
            return Vec::new();
        }
        let held: Vec<Position> =
            self.in_flight.iter().filter(|(_, flight)| flight.member == id).map(|(position, _)| *position).collect();
        let mut parks = Vec::new();
        for position in held {
            let Some(flight) = self.take_in_flight(position) else { continue };
            let mut entry = flight.entry;
            if failed {
                entry.retries += 1;
                if entry.retries > self.tuning.max_retries {
                    parks.push(self.park(entry, "its consumer went away once too often".into()));
                    continue;
                }
            }
            self.release_front(entry);
        }
        parks
    }

    /// Hands out what the members can take now, in position order.
    pub fn dispatch(&mut self, now: Instant) -> Vec<(MemberId, Delivery)> {
        let mut deliveries = Vec::new();
        if self.members.is_empty() {
            return deliveries;
        }
        let mut taken = Vec::new();
        for (position, lane) in &self.ready {
            if self.members.values().all(|m| m.stats.in_flight >= m.max_in_flight) {
                break;
            }
            let queue = self.queues.get(lane).expect("a ready lane has a queue");
            let stream = &queue.events.front().expect("a ready lane has events").event.stream;
            let Some(owner) = self.owner(stream) else { break };
            let member = self.members.get(&owner).expect("owner is a member");
            if member.stats.in_flight < member.max_in_flight {
                taken.push((*position, lane.clone(), owner));
                // Count it now so the loop sees the member filling up.
                self.members.get_mut(&owner).expect("owner is a member").stats.in_flight += 1;
            }
        }
        for (position, lane, owner) in taken {
            self.ready.remove(&position);
            let queue = self.queues.get_mut(&lane).expect("a ready lane has a queue");
            let entry = queue.events.pop_front().expect("a ready lane has events");
            assert_eq!(entry.position(), position, "ready is keyed by the queue's first event");
            queue.out = Some(position);
            let member = self.members.get_mut(&owner).expect("owner is a member");
            member.stats.delivered += 1;
            let deadline = now + self.tuning.message_timeout;
            self.deadlines.insert((deadline, position));
            deliveries.push((owner, Delivery { event: Arc::clone(&entry.event), retries: entry.retries }));
            self.in_flight.insert(position, InFlight { entry, member: owner, deadline });
        }
        deliveries
    }

    /// `member` handled the event at `position`. Returns whether it held
    /// it (an acknowledgement after a timeout moved the event on is
    /// ignored).
    pub fn ack(&mut self, member: MemberId, position: Position) -> bool {
        if self.in_flight.get(&position).is_none_or(|f| f.member != member) {
            return false;
        }
        let flight = self.take_in_flight(position).expect("checked above");
        if let Some(m) = self.members.get_mut(&member) {
            m.stats.acked += 1;
        }
        self.finish(&flight.entry);
        true
    }

    /// `member` could not handle the event at `position`. Returns an event
    /// to park, if it comes to that, and whether the member held it.
    pub fn nack(
        &mut self,
        member: MemberId,
        position: Position,
        action: NackAction,
        reason: &str,
        now: Instant,
    ) -> (Option<ParkOrder>, bool) {
        if self.in_flight.get(&position).is_none_or(|f| f.member != member) {
            return (None, false);
        }
        let flight = self.take_in_flight(position).expect("checked above");
        if let Some(m) = self.members.get_mut(&member) {
            m.stats.failed += 1;
        }
        let park = match action {
            NackAction::Skip => {
                self.finish(&flight.entry);
                None
            }
            NackAction::Park => Some(self.park(flight.entry, format!("parked by its consumer: {reason}"))),
            NackAction::Retry => self.retry(flight.entry, reason, now),
        };
        (park, true)
    }

    /// Moves time to `now`: deliveries past their deadline fail, retries
    /// that are due go back to their streams. Returns events to park.
    pub fn tick(&mut self, now: Instant) -> Vec<ParkOrder> {
        let mut parks = Vec::new();
        while let Some(&(deadline, position)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let flight = self.take_in_flight(position).expect("deadlines follow in-flight events");
            if let Some(m) = self.members.get_mut(&flight.member) {
                m.stats.failed += 1;
            }
            let timeout = self.tuning.message_timeout;
            if let Some(park) = self.retry(flight.entry, &format!("not acknowledged within {timeout:?}"), now) {
                parks.push(park);
            }
        }
        while let Some((&(due, position), _)) = self.retrying.first_key_value() {
            if due > now {
                break;
            }
            let entry = self.retrying.remove(&(due, position)).expect("just seen");
            self.release_front(entry);
        }
        parks
    }

    /// When [`Dispatcher::tick`] next has work: the earliest deadline or
    /// retry.
    #[must_use]
    pub fn next_wake(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        let retry = self.retrying.first_key_value().map(|((at, _), _)| *at);
        match (deadline, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The park of the event at `position` is durable: it is done.
    pub fn parked(&mut self, position: Position) {
        if let Some(entry) = self.parking.remove(&position) {
            self.finish(&entry);
        }
    }

    /// The members and their counts.
    #[must_use]
    pub fn members(&self) -> Vec<MemberStats> {
        // Queued events belong to a member only when streams are pinned.
        let mut queued: HashMap<MemberId, usize> = HashMap::new();
        for queue in self.queues.values() {
            let owner =
                queue.events.front().filter(|_| self.strategy.pinned()).and_then(|e| self.owner(&e.event.stream));
            if let Some(owner) = owner {
                *queued.entry(owner).or_default() += queue.events.len();
            }
        }
        self.members
            .iter()
            .map(|(id, member)| MemberStats { queued: queued.get(id).copied().unwrap_or(0), ..member.stats.clone() })
            .collect()
    }

    /// Events delivered and not yet answered.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Events given up on whose park record is not durable yet: not done,
    /// and no longer any member's.
    #[must_use]
    pub fn parking(&self) -> usize {
        self.parking.len()
    }

    /// Events waiting for a retry.
    #[must_use]
    pub fn retrying(&self) -> usize {
        self.retrying.len()
    }

    /// The member an event of `stream` goes to. Pinned: highest rendezvous
    /// hash of member name and stream, ties broken by the lower id (full
    /// or not). Otherwise a member with room: the one with the most
    /// ([`Strategy::RoundRobin`]) or the oldest ([`Strategy::DispatchToSingle`]);
    /// `None` when every member is full or there is none.
    fn owner(&self, stream: &StreamName) -> Option<MemberId> {
        let with_room = || self.members.iter().filter(|(_, m)| m.stats.in_flight < m.max_in_flight);
        match self.strategy {
            Strategy::PerStream | Strategy::Pinned => self
                .members
                .iter()
                .map(|(id, member)| (weight(&member.name, stream), std::cmp::Reverse(*id)))
                .max()
                .map(|(_, std::cmp::Reverse(id))| id),
            Strategy::RoundRobin => with_room()
                .map(|(id, m)| (m.max_in_flight - m.stats.in_flight, std::cmp::Reverse(*id)))
                .max()
                .map(|(_, std::cmp::Reverse(id))| id),
            Strategy::DispatchToSingle => with_room().map(|(id, _)| *id).next(),
        }
    }

    /// The lane an entry travels in.
    fn lane(&self, entry: &Entry) -> Lane {
        if self.strategy.ordered() { Lane::Stream(entry.event.stream.clone()) } else { Lane::Event(entry.position()) }
    }

    fn take_in_flight(&mut self, position: Position) -> Option<InFlight> {
        let flight = self.in_flight.remove(&position)?;
        self.deadlines.remove(&(flight.deadline, position));
        if let Some(member) = self.members.get_mut(&flight.member) {
            member.stats.in_flight -= 1;
        }
        Some(flight)
    }

    fn retry(&mut self, mut entry: Entry, reason: &str, now: Instant) -> Option<ParkOrder> {
        entry.retries += 1;
        if entry.retries > self.tuning.max_retries {
            let tries = entry.retries;
            return Some(self.park(entry, format!("failed {tries} times; last: {reason}")));
        }
        let due = now + self.tuning.backoff(entry.retries);
        self.retrying.insert((due, entry.position()), entry);
        None
    }

    fn park(&mut self, entry: Entry, reason: String) -> ParkOrder {
        let order = ParkOrder { event: Arc::clone(&entry.event), retries: entry.retries, reason };
        self.parking.insert(entry.position(), entry);
        order
    }

    /// The entry is done: its stream may send its next event.
    fn finish(&mut self, entry: &Entry) {
        match entry.parked_revision {
            Some(revision) => {
                self.unfinished_parked.remove(&revision);
                self.replaying.remove(&entry.position());
            }
            None => {
                self.unfinished.remove(&entry.position());
            }
        }
        let lane = self.lane(entry);
        let queue = self.queues.get_mut(&lane).expect("an event out has its lane's queue");
        assert_eq!(queue.out, Some(entry.position()), "the finished event was the lane's one out");
        queue.out = None;
        match queue.events.front() {
            Some(next) => {
                self.ready.insert(next.position(), lane);
            }
            None => {
                self.queues.remove(&lane);
            }
        }
    }

    /// Puts an event that was out back at the head of its stream's queue.
    fn release_front(&mut self, entry: Entry) {
        let lane = self.lane(&entry);
        let queue = self.queues.get_mut(&lane).expect("an event out has its lane's queue");
        assert_eq!(queue.out, Some(entry.position()), "the released event was the lane's one out");
        queue.out = None;
        if let Some(next) = queue.events.front() {
            self.ready.remove(&next.position());
        }
        self.ready.insert(entry.position(), lane);
        queue.events.push_front(entry);
    }

    fn enqueue_back(&mut self, entry: Entry) {
        let lane = self.lane(&entry);
        let queue = self.queues.entry(lane.clone()).or_default();
        if queue.out.is_none() && queue.events.is_empty() {
            self.ready.insert(entry.position(), lane);
        }
        queue.events.push_back(entry);
    }
}

/// Rendezvous weight of `member` for `stream`.
fn weight(member: &str, stream: &StreamName) -> u64 {
    let mut hasher = DefaultHasher::new();
    member.hash(&mut hasher);
    stream.as_str().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use quipu_core::{EventId, EventType, Revision};

    fn tuning(max_retries: u32) -> Tuning {
        Tuning {
            max_retries,
            message_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }

    fn event(position: u64, stream: &str, revision: u64) -> RecordedEvent {
        RecordedEvent {
            id: EventId::random(),
            stream: StreamName::new(stream).expect("valid test stream"),
            revision: Revision(revision),
            position: Position(position),
            event_type: EventType::new("Happened").expect("valid test type"),
            data: Vec::new(),
            metadata: Vec::new(),
            tags: Vec::new(),
            recorded_at_us: 0,
        }
    }

    fn positions(deliveries: &[(MemberId, Delivery)]) -> Vec<u64> {
        deliveries.iter().map(|(_, d)| d.event.position.0).collect()
    }

    #[test]
    fn one_event_of_a_stream_is_out_at_a_time() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(3), Position(0), 0);
        d.join(1, "a", 10);
        for (position, stream, revision) in [(0, "s-1", 0), (1, "s-2", 0), (2, "s-1", 1), (3, "s-1", 2)] {
            d.push(event(position, stream, revision));
        }
        assert_eq!(positions(&d.dispatch(now)), vec![0, 1]);
        assert!(d.dispatch(now).is_empty(), "s-1's next waits for its first");
        assert!(d.ack(1, Position(0)));
        assert_eq!(positions(&d.dispatch(now)), vec![2]);
        assert!(d.ack(1, Position(2)));
        assert_eq!(positions(&d.dispatch(now)), vec![3]);
    }

    #[test]
    fn a_member_holds_at_most_its_in_flight_bound() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(3), Position(0), 0);
        d.join(1, "a", 2);
        for n in 0..5 {
            d.push(event(n, &format!("s-{n}"), 0));
        }
        assert_eq!(positions(&d.dispatch(now)), vec![0, 1]);
        assert!(d.dispatch(now).is_empty());
        assert!(d.ack(1, Position(1)));
        assert_eq!(positions(&d.dispatch(now)), vec![2]);
        assert_eq!(d.members()[0].in_flight, 2);
        assert_eq!(d.members()[0].queued, 2);
    }

    #[test]
    fn streams_stick_to_a_member_and_move_only_when_it_leaves() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(3), Position(0), 0);
        d.join(1, "a", 1000);
        d.join(2, "b", 1000);
        let mut owner: HashMap<String, MemberId> = HashMap::new();
        let mut position = 0;
        for round in 0..3 {
            for n in 0..50 {
                d.push(event(position, &format!("s-{n}"), round));
                position += 1;
            }
            for (member, delivery) in d.dispatch(now) {
                let previous = owner.insert(delivery.event.stream.as_str().to_string(), member);
                assert!(previous.is_none_or(|p| p == member), "a stream changed members without a leave");
                assert!(d.ack(member, delivery.event.position));
            }
        }
        let members: BTreeSet<MemberId> = owner.values().copied().collect();
        assert_eq!(members.len(), 2, "50 streams spread over both members");
        assert!(d.leave(2, false).is_empty());
        for n in 0..50 {
            d.push(event(position, &format!("s-{n}"), 3));
            position += 1;
        }
        let deliveries = d.dispatch(now);
        assert_eq!(deliveries.len(), 50);
        assert!(deliveries.iter().all(|(member, _)| *member == 1));
    }

    #[test]
    fn retries_back_off_then_park_and_the_watermark_waits_for_the_park() {
        let start = Instant::now();
        let mut d = Dispatcher::new(tuning(2), Position(10), 0);
        d.join(1, "a", 10);
        d.push(event(10, "s-1", 0));
        d.push(event(11, "s-2", 0));
        d.push(event(12, "s-1", 1));
        assert_eq!(positions(&d.dispatch(start)), vec![10, 11]);
        assert!(d.ack(1, Position(11)));
        assert_eq!(d.watermark(), Position(10));
        let mut now = start;
        for attempt in 1..=2 {
            let (park, held) = d.nack(1, Position(10), NackAction::Retry, "boom", now);
            assert!(held && park.is_none());
            assert!(d.dispatch(now).is_empty(), "not before the backoff, and s-1's next waits");
            now += tuning(2).backoff(attempt);
            assert!(d.tick(now).is_empty());
            let again = d.dispatch(now);
            assert_eq!(positions(&again), vec![10]);
            assert_eq!(again[0].1.retries, attempt);
        }
        let (park, _) = d.nack(1, Position(10), NackAction::Retry, "boom", now);
        let park = park.expect("third failure parks");
        assert_eq!(park.event.position, Position(10));
        assert!(park.reason.contains("boom"), "{}", park.reason);
        assert!(d.dispatch(now).is_empty(), "s-1 waits until the park is durable");
        assert_eq!(d.watermark(), Position(10));
        assert_eq!((d.in_flight(), d.parking()), (0, 1), "out of the member's hands, not done");
        d.parked(Position(10));
        assert_eq!(d.parking(), 0);
        assert_eq!(d.watermark(), Position(12));
        assert_eq!(positions(&d.dispatch(now)), vec![12]);
        assert!(d.ack(1, Position(12)));
        assert_eq!(d.watermark(), Position(13));
    }

    #[test]
    fn an_unacknowledged_delivery_times_out_into_a_retry() {
        let start = Instant::now();
        let mut d = Dispatcher::new(tuning(5), Position(0), 0);
        d.join(1, "a", 10);
        d.push(event(0, "s-1", 0));
        assert_eq!(positions(&d.dispatch(start)), vec![0]);
        let deadline = d.next_wake().expect("a deadline");
        assert_eq!(deadline, start + Duration::from_secs(30));
        assert!(d.tick(deadline).is_empty());
        assert!(!d.ack(1, Position(0)), "a late acknowledgement is ignored");
        let due = d.next_wake().expect("a retry");
        d.tick(due);
        let again = d.dispatch(due);
        assert_eq!(again[0].1.retries, 1);
    }

    #[test]
    fn a_member_that_leaves_hands_its_events_back() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(0), Position(0), 0);
        d.join(1, "a", 10);
        d.push(event(0, "s-1", 0));
        d.push(event(1, "s-2", 0));
        assert_eq!(d.dispatch(now).len(), 2);
        // A clean leave costs no attempt, even with no retries allowed.
        assert!(d.leave(1, false).is_empty());
        d.join(2, "b", 10);
        assert_eq!(positions(&d.dispatch(now)), vec![0, 1]);
        // A disconnect does: with no retries allowed, both are parked.
        let parks = d.leave(2, true);
        assert_eq!(parks.len(), 2);
        d.parked(Position(0));
        d.parked(Position(1));
        assert_eq!(d.watermark(), Position(2));
        assert_eq!(d.unfinished(), 0);
    }

    #[test]
    fn skip_finishes_and_unknown_answers_are_ignored() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(3), Position(0), 0);
        d.join(1, "a", 10);
        d.join(2, "b", 10);
        d.push(event(0, "s-1", 0));
        let (member, _) = d.dispatch(now)[0].clone();
        let other = if member == 1 { 2 } else { 1 };
        assert!(!d.ack(other, Position(0)), "only the holder answers");
        assert!(matches!(d.nack(other, Position(0), NackAction::Skip, "", now), (None, false)));
        assert!(!d.ack(member, Position(7)));
        assert!(d.nack(member, Position(0), NackAction::Skip, "", now).1);
        assert_eq!(d.watermark(), Position(1));
    }

    #[test]
    fn replayed_parked_events_move_only_the_parked_watermark() {
        let now = Instant::now();
        let mut d = Dispatcher::new(tuning(3), Position(100), 4);
        d.join(1, "a", 10);
        d.push_parked(event(5, "s-1", 0), 4);
        d.push_parked(event(5, "s-1", 0), 5); // the same event parked twice
        d.skip_parked(6);
        assert_eq!(d.unfinished(), 1);
        assert_eq!(d.parked_watermark(), 4);
        let out = d.dispatch(now);
        assert_eq!(positions(&out), vec![5]);
        assert!(d.ack(1, Position(5)));
        assert_eq!(d.parked_watermark(), 7);
        assert_eq!(d.watermark(), Position(100));
    }

    #[test]
    fn unordered_strategies_send_many_events_of_a_stream_at_once() {
        let now = Instant::now();
        let mut round_robin = Dispatcher::new(tuning(3), Position(0), 0).sharing(Strategy::RoundRobin);
        round_robin.join(1, "a", 3);
        round_robin.join(2, "b", 3);
        for n in 0..8 {
            round_robin.push(event(n, "s-1", n));
        }
        let out = round_robin.dispatch(now);
        assert_eq!(positions(&out), vec![0, 1, 2, 3, 4, 5], "one stream, six out at once");
        let to_a = out.iter().filter(|(member, _)| *member == 1).count();
        assert_eq!(to_a, 3, "spread over both members");
        assert!(round_robin.ack(2, out.iter().find(|(m, _)| *m == 2).expect("b holds some").1.event.position));
        assert_eq!(positions(&round_robin.dispatch(now)), vec![6], "the member with room gets the next");

        let mut single = Dispatcher::new(tuning(3), Position(0), 0).sharing(Strategy::DispatchToSingle);
        single.join(1, "a", 2);
        single.join(2, "b", 5);
        for n in 0..4 {
            single.push(event(n, &format!("s-{n}"), 0));
        }
        let out = single.dispatch(now);
        let members: Vec<MemberId> = out.iter().map(|(member, _)| *member).collect();
        assert_eq!(members, vec![1, 1, 2, 2], "the oldest member fills first");

        let mut pinned = Dispatcher::new(tuning(3), Position(0), 0).sharing(Strategy::Pinned);
        pinned.join(1, "a", 10);
        pinned.join(2, "b", 10);
        for n in 0..6 {
            pinned.push(event(n, "s-1", n));
        }
        let out = pinned.dispatch(now);
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|(member, _)| *member == out[0].0), "one stream, one member");
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let t = tuning(3);
        assert_eq!(t.backoff(1), Duration::from_millis(100));
        assert_eq!(t.backoff(2), Duration::from_millis(200));
        assert_eq!(t.backoff(8), Duration::from_millis(10_000));
        assert_eq!(t.backoff(u32::MAX), Duration::from_millis(10_000));
    }

    mod property {
        use super::*;
        use crate::group::dispatcher::Strategy as Sharing;
        use proptest::prelude::*;
        use proptest::strategy::Strategy;

        #[derive(Debug, Clone)]
        enum Op {
            Push(u8),
            Join(u8),
            Leave(u8, bool),
            Ack(u8),
            Nack(u8, u8),
            Advance(u16),
            Parked(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..6).prop_map(Op::Push),
                1 => (0u8..4).prop_map(Op::Join),
                1 => (0u8..4, any::<bool>()).prop_map(|(m, f)| Op::Leave(m, f)),
                4 => any::<u8>().prop_map(Op::Ack),
                2 => (any::<u8>(), 0u8..3).prop_map(|(n, a)| Op::Nack(n, a)),
                1 => (0u16..40_000).prop_map(Op::Advance),
                1 => any::<u8>().prop_map(Op::Parked),
            ]
        }

        proptest! {
            /// Whatever members, answers and timeouts do: with per-stream
            /// order a stream's events go out in revision order (an event
            /// again until it is done, then the next); with every strategy
            /// no member exceeds its bound, the watermark never passes an
            /// unfinished event, and once everything is answered every
            /// event was done exactly once.
            #[test]
            fn order_bounds_and_completion_hold(
                ops in proptest::collection::vec(op(), 1..300),
                sharing in prop_oneof![
                    Just(Sharing::PerStream),
                    Just(Sharing::RoundRobin),
                    Just(Sharing::DispatchToSingle),
                    Just(Sharing::Pinned),
                ],
            ) {
                let mut now = Instant::now();
                let mut d = Dispatcher::new(tuning(2), Position(0), 0).sharing(sharing);
                let mut next_revision: HashMap<String, u64> = HashMap::new();
                let mut expected_next: HashMap<String, u64> = HashMap::new();
                let mut out: Vec<(MemberId, Position)> = Vec::new();
                let mut parking: Vec<Position> = Vec::new();
                let mut done: BTreeSet<u64> = BTreeSet::new();
                let mut members: BTreeSet<MemberId> = BTreeSet::new();
                let mut pushed = 0u64;
                let mut next_id = 100;
                for op in ops {
                    match op {
                        Op::Push(s) => {
                            let stream = format!("s-{s}");
                            let revision = next_revision.entry(stream.clone()).or_insert(0);
                            d.push(event(pushed, &stream, *revision));
                            *revision += 1;
                            pushed += 1;
                        }
                        Op::Join(m) => {
                            next_id += 1;
                            d.join(next_id, &format!("m{m}"), 1 + usize::from(m));
                            members.insert(next_id);
                        }
                        Op::Leave(m, failed) => {
                            if let Some(&id) = members.iter().nth(usize::from(m) % members.len().max(1)) {
                                members.remove(&id);
                                out.retain(|(member, _)| *member != id);
                                parking.extend(d.leave(id, failed).into_iter().map(|p| p.event.position));
                            }
                        }
                        Op::Ack(n) => {
                            if !out.is_empty() {
                                let (member, position) = out.remove(usize::from(n) % out.len());
                                let event = d.in_flight.get(&position).map(|f| Arc::clone(&f.entry.event));
                                if d.ack(member, position) {
                                    let event = event.expect("held");
                                    prop_assert!(done.insert(position.0), "done twice");
                                    expected_next.insert(event.stream.as_str().to_string(), event.revision.0 + 1);
                                }
                            }
                        }
                        Op::Nack(n, action) => {
                            if !out.is_empty() {
                                let (member, position) = out.remove(usize::from(n) % out.len());
                                let action = [NackAction::Retry, NackAction::Park, NackAction::Skip][usize::from(action)];
                                let event = d.in_flight.get(&position).map(|f| Arc::clone(&f.entry.event));
                                let (park, held) = d.nack(member, position, action, "test", now);
                                if held && action == NackAction::Skip {
                                    let event = event.expect("held");
                                    prop_assert!(done.insert(position.0), "done twice");
                                    expected_next.insert(event.stream.as_str().to_string(), event.revision.0 + 1);
                                }
                                parking.extend(park.map(|p| p.event.position));
                            }
                        }
                        Op::Advance(ms) => {
                            now += Duration::from_millis(u64::from(ms));
                            let parks = d.tick(now);
                            parking.extend(parks.into_iter().map(|p| p.event.position));
                            out.retain(|(_, p)| d.in_flight.contains_key(p));
                        }
                        Op::Parked(n) => {
                            if !parking.is_empty() {
                                let position = parking.remove(usize::from(n) % parking.len());
                                let stream = d.parking.get(&position).map(|e| Arc::clone(&e.event));
                                d.parked(position);
                                let event = stream.expect("parking holds it");
                                prop_assert!(done.insert(position.0), "done twice");
                                expected_next.insert(event.stream.as_str().to_string(), event.revision.0 + 1);
                            }
                        }
                    }
                    for (member, delivery) in d.dispatch(now) {
                        let stream = delivery.event.stream.as_str().to_string();
                        if sharing == Sharing::PerStream {
                            let want = expected_next.get(&stream).copied().unwrap_or(0);
                            prop_assert_eq!(delivery.event.revision.0, want, "{} out of order", stream);
                        }
                        prop_assert!(!done.contains(&delivery.event.position.0));
                        out.push((member, delivery.event.position));
                    }
                    for member in d.members() {
                        prop_assert!(member.in_flight <= member.max_in_flight);
                    }
                    let watermark = d.watermark().0;
                    prop_assert!((0..watermark).all(|p| done.contains(&p)), "watermark {} passes an unfinished event", watermark);
                }
                // Drain: one patient member answers everything.
                next_id += 1;
                d.join(next_id, "drain", 1000);
                for position in std::mem::take(&mut parking) {
                    d.parked(position);
                    done.insert(position.0);
                }
                for _ in 0..10_000 {
                    now += Duration::from_secs(60);
                    for park in d.tick(now) {
                        d.parked(park.event.position);
                        prop_assert!(done.insert(park.event.position.0));
                    }
                    let deliveries = d.dispatch(now);
                    if deliveries.is_empty() && d.unfinished() == 0 {
                        break;
                    }
                    for (member, delivery) in deliveries {
                        if d.ack(member, delivery.event.position) {
                            prop_assert!(done.insert(delivery.event.position.0), "done twice");
                        }
                    }
                }
                prop_assert_eq!(d.unfinished(), 0);
                prop_assert_eq!(done.len() as u64, pushed);
                prop_assert_eq!(d.watermark(), Position(pushed));
            }
        }
    }
}
