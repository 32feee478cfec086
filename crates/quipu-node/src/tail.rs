//! The newest events of `$all`, read once for every live feed.
//!
//! Live subscribers all want the same thing: the events just written.
//! Reading them from the store once per subscriber made every append cost
//! a store read per subscriber, and tied a thread to each read. The tail
//! reads them once, on one task, into a ring of shared chunks; a feed at
//! the head takes its events from the ring in memory, filtered by its
//! source, and a feed behind the ring reads the store as before.
//!
//! What it promises:
//! - every event of `$all` from the ring's base to its end is in the ring,
//!   in order: a feed whose next position is at or after the base misses
//!   nothing by reading the ring instead of the store;
//! - the ring holds at most about [`TailOptions::bytes_max`] of events
//!   (always at least its newest chunk): older chunks are dropped and the
//!   base moves past them;
//! - it reads only while feeds follow it; once none has for
//!   [`TailOptions::idle`], it drops the ring and its memory;
//! - its end moves at most once per publication interval, which grows
//!   with the number of followers ([`TailOptions::interval_per_follower`],
//!   capped by [`TailOptions::interval_max`]), so two hundred subscribers
//!   or more wake together fifty times a second rather than once per
//!   commit each, and each gets its new events in one write. A lone
//!   follower is woken at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quipu_core::{Direction, Position, RecordedEvent, Store};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Events read from the store per tail read.
const READ_EVENTS: usize = 1000;
/// Bytes an event costs the ring beyond its data and metadata (its
/// struct, names, id and tags), roughly.
const EVENT_OVERHEAD_BYTES: usize = 160;

/// How the tail sizes itself.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// Bytes of events the ring keeps.
    pub bytes_max: usize,
    /// Publication interval added per follower.
    pub interval_per_follower: Duration,
    /// Longest publication interval.
    pub interval_max: Duration,
    /// How long the ring stays once no feed follows it.
    pub idle: Duration,
}

impl Default for TailOptions {
    fn default() -> TailOptions {
        TailOptions {
            bytes_max: 32 * 1024 * 1024,
            // Sends, not reads, cost the most per delivery (loopback TCP in
            // the kernel, both ends): at 10 µs, 200 subscribers got about
            // nine events per write and left appends 2,400/s; at 100 µs,
            // fifty a second, 3,400-3,800/s, their lag p99 36-40 ms.
            interval_per_follower: Duration::from_micros(100),
            interval_max: Duration::from_millis(20),
            idle: Duration::from_secs(2),
        }
    }
}

/// What a read of the ring found.
#[derive(Debug)]
pub struct TailPage {
    /// The matching events from the asked position, in order.
    pub events: Vec<RecordedEvent>,
    /// The position after the last event examined: the next read starts
    /// there (events between were examined and did not match).
    pub next: Position,
    /// Whether the read reached the ring's end.
    pub at_end: bool,
    /// The last position of `$all` the ring had read when this page was
    /// taken (`None`: nothing was written).
    pub end: Option<Position>,
}

/// The shared tail; clones share it.
#[derive(Clone)]
pub struct Tail {
    shared: Arc<Shared>,
}

struct Shared {
    ring: Mutex<Ring>,
    /// The last position the ring has read; feeds wait for it to move.
    end: watch::Sender<Option<Position>>,
    followers: AtomicUsize,
    /// Set when the tail stopped on a read error: it reads no more.
    failed: AtomicBool,
    /// Rings when the first follower arrives and when the last leaves.
    changed: Notify,
    options: TailOptions,
}

/// The ring: chunks of consecutive events of `$all`.
struct Ring {
    /// Whether the ring is being kept; a dormant ring covers nothing.
    active: bool,
    /// Every event from here to `end` is in `chunks`.
    base: Position,
    /// The last position read (`None`: nothing was written); what the
    /// `end` channel publishes, set under the same lock as the chunks.
    end: Option<Position>,
    chunks: VecDeque<Arc<Chunk>>,
    bytes: usize,
}

/// Events read together, non-empty, in order.
struct Chunk {
    events: Vec<RecordedEvent>,
    bytes: usize,
}

impl Chunk {
    fn first(&self) -> Position {
        self.events.first().map_or(Position(0), |e| e.position)
    }

    fn last(&self) -> Position {
        self.events.last().map_or(Position(0), |e| e.position)
    }
}

/// A feed's place among the tail's followers; leaves on drop.
pub struct Following {
    shared: Arc<Shared>,
}

impl Drop for Following {
    fn drop(&mut self) {
        if self.shared.followers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.changed.notify_one();
        }
    }
}

impl Tail {
    /// Starts the tail of `store` on the current runtime; it follows the
    /// store's `head` and ends when `stopping` turns true.
    #[must_use]
    pub fn start(
        store: Arc<Store>,
        head: watch::Receiver<Option<Position>>,
        stopping: watch::Receiver<bool>,
        options: TailOptions,
    ) -> Tail {
        let (end, _) = watch::channel(store.last_position());
        let ring = Ring { active: false, base: Position(0), end: None, chunks: VecDeque::new(), bytes: 0 };
        let shared = Arc::new(Shared {
            ring: Mutex::new(ring),
            end,
            followers: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            changed: Notify::new(),
            options,
        });
        tokio::spawn(run(Arc::clone(&shared), store, head, stopping));
        Tail { shared }
    }

    /// Joins the followers: the tail keeps reading while any remains.
    #[must_use]
    pub fn follow(&self) -> Following {
        if self.shared.followers.fetch_add(1, Ordering::AcqRel) == 0 {
            self.shared.changed.notify_one();
        }
        Following { shared: Arc::clone(&self.shared) }
    }

    /// Whether the tail stopped on a read error; its end then moves no
    /// more (a last wake-up tells the waiting feeds).
    #[must_use]
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Feeds following the tail now.
    #[must_use]
    pub fn followers(&self) -> usize {
        self.shared.followers.load(Ordering::Acquire)
    }

    /// Bytes of events the ring holds now (as it counts them against
    /// [`TailOptions::bytes_max`]); 0 while it is dormant.
    #[must_use]
    pub fn ring_bytes(&self) -> usize {
        self.shared.ring.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    /// A receiver of the ring's end, which moves once per publication.
    #[must_use]
    pub fn end(&self) -> watch::Receiver<Option<Position>> {
        self.shared.end.subscribe()
    }

    /// Up to `limit` events at or after `from` that `matches` accepts,
    /// from the ring; `None` when the ring does not cover `from` (it is
    /// dormant, or `from` is before its base): read the store then.
    pub fn read(&self, from: Position, limit: usize, matches: impl Fn(&RecordedEvent) -> bool) -> Option<TailPage> {
        let (chunks, end) = {
            let ring = self.shared.ring.lock().unwrap_or_else(PoisonError::into_inner);
            if !ring.active || from < ring.base {
                return None;
            }
            let first = ring.chunks.partition_point(|chunk| chunk.last() < from);
            (ring.chunks.range(first..).cloned().collect::<Vec<_>>(), ring.end)
        };
        let mut page = TailPage { events: Vec::new(), next: from, at_end: true, end };
        'chunks: for chunk in chunks {
            let skip = chunk.events.partition_point(|e| e.position < from);
            for event in chunk.events.iter().skip(skip) {
                if page.events.len() == limit {
                    page.at_end = false;
                    break 'chunks;
                }
                if matches(event) {
                    page.events.push(event.clone());
                }
                page.next = event.position.next();
            }
        }
        if page.at_end {
            // Everything up to the ring's end was examined, even past its
            // last event (after a scavenged gap).
            page.next = page.next.max(end.map_or(Position(0), Position::next));
        }
        Some(page)
    }
}

/// The tail's task: wait for followers, then read what the store's head
/// says is new, publish it, and wait again.
async fn run(
    shared: Arc<Shared>,
    store: Arc<Store>,
    mut head: watch::Receiver<Option<Position>>,
    mut stopping: watch::Receiver<bool>,
) {
    let options = shared.options;
    loop {
        if shared.followers.load(Ordering::Acquire) == 0 {
            let changed = tokio::select! {
                () = shared.changed.notified() => true,
                () = tokio::time::sleep(options.idle) => false,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            if changed {
                continue;
            }
            deactivate(&shared);
            tokio::select! {
                () = shared.changed.notified() => continue,
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
        activate(&shared, &store);
        let end = shared.ring.lock().unwrap_or_else(PoisonError::into_inner).end;
        let beyond = |last: &Option<Position>| last.is_some() && *last > end;
        tokio::select! {
            moved = head.wait_for(beyond) => if moved.is_err() { return },
            _ = stopping.wait_for(|stop| *stop) => return,
            () = shared.changed.notified() => continue,
        }
        let published = Instant::now();
        if !read_new(&shared, &store).await {
            // Feeds read the store from here on, and end when they find
            // nothing new, as they did when their own reads failed.
            deactivate(&shared);
            shared.failed.store(true, Ordering::Release);
            shared.end.send_modify(|_| {});
            return;
        }
        let followers = u32::try_from(shared.followers.load(Ordering::Acquire)).unwrap_or(u32::MAX);
        let interval = options.interval_per_follower.saturating_mul(followers).min(options.interval_max);
        if interval >= Duration::from_millis(1) {
            tokio::select! {
                () = tokio::time::sleep_until(published + interval) => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// Starts keeping the ring, from the store's head, unless it is kept.
fn activate(shared: &Shared, store: &Store) {
    let mut ring = shared.ring.lock().unwrap_or_else(PoisonError::into_inner);
    if ring.active {
        return;
    }
    let last = store.last_position();
    ring.active = true;
    ring.base = last.map_or(Position(0), Position::next);
    ring.end = last;
    shared.end.send_replace(last);
}

/// Drops the ring and what it holds.
fn deactivate(shared: &Shared) {
    let mut ring = shared.ring.lock().unwrap_or_else(PoisonError::into_inner);
    tracing::debug!(chunks = ring.chunks.len(), bytes = ring.bytes, "no feed follows the tail; its ring goes");
    ring.active = false;
    ring.chunks = VecDeque::new();
    ring.bytes = 0;
}

/// Reads every event after the ring's end into it and publishes the new
/// end; false when the store fails (the tail stops, and so do its feeds'
/// live reads: they see no more events).
async fn read_new(shared: &Arc<Shared>, store: &Arc<Store>) -> bool {
    loop {
        let from = shared.ring.lock().unwrap_or_else(PoisonError::into_inner).end.map_or(Position(0), Position::next);
        let reader = Arc::clone(store);
        let read = crate::blocking::follow(move || reader.read_all(Some(from), Direction::Forwards, READ_EVENTS)).await;
        let events = match read {
            Ok(Ok(events)) => events,
            Ok(Err(error)) => {
                tracing::error!(%error, "the subscriptions' tail cannot read the log; live feeds stop");
                return false;
            }
            Err(error) => {
                tracing::error!(%error, "the subscriptions' tail read failed; live feeds stop");
                return false;
            }
        };
        let short = events.len() < READ_EVENTS;
        if let Some(last) = events.last().map(|e| e.position) {
            push(shared, events);
            shared.end.send_replace(Some(last));
        }
        if short {
            return true;
        }
    }
}

/// Adds a chunk at the ring's end and drops the oldest past the budget.
fn push(shared: &Shared, mut events: Vec<RecordedEvent>) {
    // The ring keeps the list as long as the events: no spare room.
    events.shrink_to_fit();
    let bytes = events.iter().map(|e| e.data.len() + e.metadata.len() + EVENT_OVERHEAD_BYTES).sum();
    let chunk = Arc::new(Chunk { events, bytes });
    let mut ring = shared.ring.lock().unwrap_or_else(PoisonError::into_inner);
    debug_assert!(ring.chunks.back().is_none_or(|last| last.last() < chunk.first()), "chunks follow each other");
    ring.bytes += chunk.bytes;
    ring.end = Some(chunk.last());
    ring.chunks.push_back(chunk);
    while ring.bytes > shared.options.bytes_max && ring.chunks.len() > 1 {
        let Some(oldest) = ring.chunks.pop_front() else { break };
        ring.bytes -= oldest.bytes;
        ring.base = oldest.last().next();
    }
}

#[cfg(test)]
mod tests {
    use quipu_core::{AppendRequest, EventType, ExpectedRevision, Options, ProposedEvent, StreamName};

    use super::*;

    fn append(store: &Store, n: u64) {
        let event = ProposedEvent::new(EventType::new("Noted").expect("valid"), n.to_le_bytes().to_vec());
        let stream = StreamName::new(format!("order-{}", n % 3)).expect("valid");
        store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
    }

    fn options(bytes_max: usize) -> TailOptions {
        TailOptions {
            bytes_max,
            interval_per_follower: Duration::ZERO,
            interval_max: Duration::ZERO,
            idle: Duration::from_millis(50),
        }
    }

    /// Waits until the tail's end reaches `last`.
    async fn published(tail: &Tail, last: Position) {
        let mut end = tail.end();
        let reached = end.wait_for(|end| *end >= Some(last));
        tokio::time::timeout(Duration::from_secs(10), reached).await.expect("published in time").expect("open");
    }

    fn positions(page: &TailPage) -> Vec<u64> {
        page.events.iter().map(|e| e.position.0).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_followed_tail_holds_what_was_written_since_and_drops_the_oldest_past_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        append(&store, 0);
        let (head_sender, head) = watch::channel(store.last_position());
        store.on_advance(Arc::new(move |last| {
            head_sender.send_replace(Some(last));
        }));
        let (_stop, stopping) = watch::channel(false);
        // Room for about ten events: a chunk per commit, so old ones go.
        let tail = Tail::start(Arc::clone(&store), head, stopping, options(10 * (EVENT_OVERHEAD_BYTES + 8)));
        assert!(tail.read(Position(0), 10, |_| true).is_none(), "a tail no feed follows covers nothing");
        let following = tail.follow();
        published(&tail, Position(0)).await;
        for n in 1..=5 {
            append(&store, n);
        }
        published(&tail, Position(5)).await;
        let page = tail.read(Position(1), 100, |_| true).expect("covered since the tail was followed");
        assert_eq!(positions(&page), [1, 2, 3, 4, 5]);
        assert!(page.at_end);
        assert_eq!((page.next, page.end), (Position(6), Some(Position(5))));

        let page = tail.read(Position(2), 2, |_| true).expect("covered");
        assert_eq!(positions(&page), [2, 3], "at most the limit");
        assert!(!page.at_end);
        assert_eq!(page.next, Position(4), "the next read starts after the last event taken");

        let page = tail.read(Position(1), 100, |e| e.stream.as_str() == "order-1").expect("covered");
        assert_eq!(positions(&page), [1, 4], "filtered; what did not match was examined");
        assert_eq!(page.next, Position(6));

        for n in 6..=40 {
            append(&store, n);
        }
        published(&tail, Position(40)).await;
        assert!(tail.read(Position(1), 100, |_| true).is_none(), "the oldest chunks left the budget");
        let page = tail.read(Position(38), 100, |_| true).expect("the newest stay");
        assert_eq!(positions(&page), [38, 39, 40]);

        drop(following);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(tail.read(Position(40), 100, |_| true).is_none(), "an unfollowed tail lets its ring go");
    }
}
