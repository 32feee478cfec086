//! A live feed of events for subscriptions: catch up by reading pages,
//! then follow the head of the log as it moves.
//!
//! What it promises: every event of its [`Source`] at or after its start
//! is yielded once, in order, across the switch from catch-up to live,
//! with one [`Item::CaughtUp`] at the switch. The next read always starts
//! right after the last event yielded, and an event is readable only once
//! its whole commit is indexed, so nothing is skipped.
//!
//! The switch comes as soon as a read returns a short page (the source's
//! end when it was read), after that page's events: an event appended
//! once the client has seen the history then arrives after the switch,
//! as KurrentDB's clients expect (its reads say "end of stream" the same
//! way).
//!
//! A feed at the head of the log reads nothing from the store: it takes
//! its events from the shared [`Tail`] in memory, filtered by its source.
//! A feed behind the tail (catching up) reads pages from the store; so
//! does a feed of one stream, which walks revisions.
//!
//! Waiting costs no thread: every feed awaits the tail's end, a
//! [`tokio::sync::watch`] channel that moves once per publication. Before
//! each read the feed notes the head; when the read finds nothing it
//! sleeps until the tail's end moves beyond that note.

use std::collections::VecDeque;
use std::sync::Arc;

use quipu_core::{AsOf, Direction, EventType, Position, RecordedEvent, Revision, Store, StreamName, Tag};
use tokio::sync::watch;

use crate::integration::IntegrationTypes;
use crate::tail::{Following, Tail, TailOptions, TailPage};
use crate::upcast::Upcasters;
use crate::{ApiError, ErrorCode};

/// Events read per catch-up page.
const PAGE: usize = 1000;
/// Capacity an empty ready buffer may keep between pages.
const READY_KEPT: usize = 64;

/// A page read, from the tail or the store.
struct Page {
    events: Vec<RecordedEvent>,
    /// The read reached the source's end as it stood then.
    at_end: bool,
    /// The head noted for the read: every event up to it was examined
    /// when `at_end`.
    head: Option<Position>,
}

/// Which events a feed follows.
#[derive(Debug, Clone)]
pub enum Source {
    /// Every event (`$all`).
    All,
    /// Events of streams in a category.
    Category(String),
    /// Events of one type.
    Type(EventType),
    /// Events carrying a tag.
    Tag(Tag),
    /// Events of one stream.
    Stream(StreamName),
    /// Events of the types marked as integration events.
    Integration(Arc<IntegrationTypes>),
}

impl Source {
    /// Up to `limit` of the source's events from `from` (inclusive: a
    /// revision for a stream, a position otherwise; absent: the start
    /// forwards, the end backwards).
    ///
    /// # Errors
    /// Read errors of the store; `StreamNotFound` for a missing stream.
    pub fn read(
        &self,
        store: &Store,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, quipu_core::Error> {
        let position = from.map(Position);
        match self {
            Source::All => store.read_all(position, direction, limit),
            Source::Category(category) => store.read_category(category, position, direction, limit),
            Source::Type(event_type) => store.read_event_type(event_type, position, direction, limit),
            Source::Tag(tag) => store.read_tag(tag, position, direction, limit),
            Source::Stream(stream) => store.read_stream(stream, from.map(Revision), direction, limit),
            Source::Integration(types) => types.read(store, position, direction, limit),
        }
    }
}

impl Source {
    /// Up to `limit` of the source's events at or after `from` from the
    /// tail, filtered in memory as the store's indexes would; `None` for a
    /// stream (walked by revision) or when the tail does not cover `from`.
    fn read_tail(&self, tail: &Tail, from: Position, limit: usize) -> Option<TailPage> {
        match self {
            Source::All => tail.read(from, limit, |_| true),
            Source::Category(category) => tail.read(from, limit, |e| e.stream.category() == category),
            Source::Type(event_type) => tail.read(from, limit, |e| e.event_type == *event_type),
            Source::Tag(tag) => tail.read(from, limit, |e| e.tags.contains(tag)),
            Source::Integration(types) => {
                let marked = types.snapshot();
                tail.read(from, limit, |e| marked.contains(&e.event_type))
            }
            Source::Stream(_) => None,
        }
    }
}

impl Source {
    /// As [`Source::read`], as the source stood at `as_of` (`None`: now):
    /// forwards, the events from `from` up to the moment; backwards, from
    /// `from` or the moment, whichever is earlier. A stream that had no event then is
    /// `StreamNotFound`; [`AsOf::Revision`] applies to streams only (a
    /// position source takes it as no bound; the API refuses it first).
    ///
    /// # Errors
    /// As [`Source::read`].
    pub fn read_as_of(
        &self,
        store: &Store,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
        as_of: Option<AsOf>,
    ) -> Result<Vec<RecordedEvent>, quipu_core::Error> {
        let Some(as_of) = as_of else { return self.read(store, from, direction, limit) };
        let (bound, key): (u64, fn(&RecordedEvent) -> u64) = match (self, as_of) {
            (Source::Stream(stream), as_of) => match store.revision_as_of(stream, as_of)? {
                Some(revision) => (revision.0, |e| e.revision.0),
                None => return Err(quipu_core::Error::StreamNotFound { stream: stream.clone() }),
            },
            (_, AsOf::Position(position)) => (position.0, |e| e.position.0),
            (_, AsOf::Time(time_us)) => match store.position_at(time_us)? {
                Some(position) => (position.0, |e| e.position.0),
                None => return Ok(Vec::new()),
            },
            (_, AsOf::Revision(_)) => return self.read(store, from, direction, limit),
        };
        match direction {
            Direction::Forwards => {
                let mut events = self.read(store, from, direction, limit)?;
                events.retain(|e| key(e) <= bound);
                Ok(events)
            }
            Direction::Backwards => self.read(store, Some(from.map_or(bound, |f| f.min(bound))), direction, limit),
        }
    }
}

/// Where a feed starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// At this position of `$all` (inclusive).
    Position(Position),
    /// At this revision of the source's stream (inclusive); only for
    /// [`Source::Stream`].
    Revision(Revision),
    /// After the last event written when the feed starts.
    End,
}

/// What a feed yields.
#[derive(Debug)]
pub enum Item {
    /// The next event.
    Event(Box<RecordedEvent>),
    /// Every event written before this point was yielded; what follows is
    /// live. Carries the head of the log at that moment.
    CaughtUp(Option<Position>),
}

/// What every feed of a server shares: the [`Tail`] of the log, fed by
/// the store's head listener, and the server's stop signal.
#[derive(Clone)]
pub struct Live {
    tail: Tail,
    /// The store's last position, as its head listener reports it.
    head: watch::Receiver<Option<Position>>,
    stopping: watch::Receiver<bool>,
}

impl Live {
    /// Starts following `store`'s head on the current runtime, with the
    /// tail sized by `options`; feeds end when `stopping` turns true.
    #[must_use]
    pub fn follow(store: &Arc<Store>, stopping: watch::Receiver<bool>, options: TailOptions) -> Live {
        let (sender, head) = watch::channel(store.last_position());
        // An advance missed between these two lines is covered: the tail
        // compares against the store's own head before it waits.
        store.on_advance(Arc::new(move |last| {
            sender.send_replace(Some(last));
        }));
        let tail = Tail::start(Arc::clone(store), head.clone(), stopping.clone(), options);
        Live { tail, head, stopping }
    }

    /// Waits until the store holds `position` (an append's position on any
    /// node of a cluster: positions agree), at most `timeout`; whether it
    /// does. At once when it holds it already.
    pub async fn reached(&self, position: Position, timeout: std::time::Duration) -> bool {
        let mut head = self.head.clone();
        let reached = head.wait_for(|last| last.is_some_and(|last| last >= position));
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }

    /// Live feeds open now (every subscription of every door, and every
    /// consumer group's reader).
    #[must_use]
    pub fn feeds(&self) -> usize {
        self.tail.followers()
    }

    /// Bytes the shared tail holds now (0 once no feed has followed it
    /// for [`TailOptions::idle`]).
    #[must_use]
    pub fn tail_bytes(&self) -> usize {
        self.tail.ring_bytes()
    }

    /// A feed of `source` from `start` (see [`Feed::new`]).
    ///
    /// # Errors
    /// As [`Feed::new`].
    pub fn feed(&self, store: Arc<Store>, source: Source, start: Start) -> Result<Feed, ApiError> {
        Feed::new(store, self, source, start)
    }
}

/// Next thing a feed reads.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    Position(Position),
    Revision(Revision),
}

/// A subscription's state.
pub struct Feed {
    store: Arc<Store>,
    source: Source,
    tail: Tail,
    /// The tail's end: what the feed waits on.
    end: watch::Receiver<Option<Position>>,
    /// Keeps the tail reading while the feed lives.
    _following: Following,
    stopping: watch::Receiver<bool>,
    next: Cursor,
    /// Where the last read of the tail stopped examining events: the
    /// next read by position starts there, not at the last event yielded
    /// (what lies between did not match the source).
    examined: Position,
    ready: VecDeque<RecordedEvent>,
    caught_up: bool,
    /// Set when a short page was read before the switch: the head noted
    /// before that read, announced once its events are out.
    end_read: Option<Option<Position>>,
    /// Position of the last event yielded.
    last_yielded: Option<Position>,
    upcasters: Option<Arc<Upcasters>>,
}

impl Feed {
    /// A feed of `source` from `start`; it ends when the server stops or
    /// the store fails.
    ///
    /// # Errors
    /// [`ApiError`] 400 for a revision start on a source that is not a
    /// stream, or a position start on a stream.
    pub fn new(store: Arc<Store>, live: &Live, source: Source, start: Start) -> Result<Feed, ApiError> {
        let next = match (&source, start) {
            (Source::Stream(_), Start::Position(_)) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidStart,
                    "a subscription to one stream starts at a revision, not a position",
                ));
            }
            (Source::Stream(stream), Start::End) => {
                Cursor::Revision(store.stream_info(stream)?.last_revision.map_or(Revision(0), Revision::next))
            }
            (Source::Stream(_), Start::Revision(revision)) => Cursor::Revision(revision),
            (_, Start::Revision(_)) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidStart,
                    "only a subscription to one stream can start at a revision; use a position",
                ));
            }
            (_, Start::Position(position)) => Cursor::Position(position),
            (_, Start::End) => Cursor::Position(store.last_position().map_or(Position(0), Position::next)),
        };
        Ok(Feed {
            store,
            source,
            tail: live.tail.clone(),
            end: live.tail.end(),
            _following: live.tail.follow(),
            stopping: live.stopping.clone(),
            next,
            examined: Position(0),
            ready: VecDeque::new(),
            caught_up: false,
            end_read: None,
            last_yielded: None,
            upcasters: None,
        })
    }

    /// The same feed yielding events at their types' current versions
    /// (see [`Upcasters`]).
    #[must_use]
    pub fn upcasting(mut self, upcasters: Arc<Upcasters>) -> Feed {
        self.upcasters = Some(upcasters);
        self
    }

    /// Whether the feed walks one stream by revision (else `$all` or an
    /// index by position).
    #[must_use]
    pub fn is_by_revision(&self) -> bool {
        matches!(self.next, Cursor::Revision(_))
    }

    /// The next item, reading or waiting as needed; `None` when the server
    /// stops or the store fails (the client then resumes from the last
    /// event it saw).
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(event) = self.pop_ready() {
                return Some(Item::Event(Box::new(event)));
            }
            if let Some(head) = self.end_read.take() {
                return Some(self.switch(head));
            }
            if *self.stopping.borrow() {
                return None;
            }
            self.shrink_ready();
            let Page { mut events, at_end, head } = self.read_page().await?;
            if let Some(upcasters) = &self.upcasters {
                upcasters.apply(&mut events);
            }
            if !events.is_empty() {
                if !self.caught_up && at_end {
                    self.end_read = Some(head);
                }
                debug_assert!(self.ready.is_empty(), "a page is read once the last one is out");
                // Takes the page's buffer as it is, no event moved.
                self.ready = VecDeque::from(events);
                continue;
            }
            if !self.caught_up {
                return Some(self.switch(head));
            }
            if self.tail.failed() {
                tracing::warn!("the subscriptions' tail stopped; closing a live subscription");
                return None;
            }
            self.wait_beyond(head).await?;
        }
    }

    /// Lets go of a large empty buffer, so an idle feed holds little.
    fn shrink_ready(&mut self) {
        if self.ready.is_empty() && self.ready.capacity() > READY_KEPT {
            self.ready = VecDeque::new();
        }
    }

    /// The events already read that come next, in order, without reading
    /// or waiting, until their data and metadata pass `bytes_max`: what a
    /// subscription can send together with the event [`Feed::next_item`]
    /// just gave.
    pub fn take_ready(&mut self, bytes_max: usize) -> Vec<RecordedEvent> {
        let mut events = Vec::new();
        self.take_ready_into(bytes_max, std::convert::identity, &mut events);
        events
    }

    /// As [`Feed::take_ready`], each event converted by `convert` as it
    /// is taken and pushed onto `out` (a message's list, without an
    /// intermediate one).
    pub fn take_ready_into<T>(
        &mut self,
        bytes_max: usize,
        mut convert: impl FnMut(RecordedEvent) -> T,
        out: &mut Vec<T>,
    ) {
        out.reserve(self.ready.len());
        let mut bytes = 0;
        while bytes < bytes_max
            && let Some(event) = self.pop_ready()
        {
            bytes += event.data.len() + event.metadata.len();
            out.push(convert(event));
        }
    }

    /// The next event already read, the cursor moved past it.
    fn pop_ready(&mut self) -> Option<RecordedEvent> {
        let event = self.ready.pop_front()?;
        self.next = match self.next {
            Cursor::Position(_) => Cursor::Position(event.position.next()),
            Cursor::Revision(_) => Cursor::Revision(event.revision.next()),
        };
        self.last_yielded = Some(event.position);
        Some(event)
    }

    /// The switch to live, once: every event up to `head` (noted before
    /// the read that found the end) and up to the last event yielded is
    /// out.
    fn switch(&mut self, head: Option<Position>) -> Item {
        debug_assert!(!self.caught_up, "one switch per feed");
        self.caught_up = true;
        Item::CaughtUp(head.max(self.last_yielded))
    }

    /// Reads the next page: from the tail when it covers the feed's
    /// place, else from the store (see [`crate::blocking`]).
    async fn read_page(&mut self) -> Option<Page> {
        if let Cursor::Position(next) = self.next {
            let from = next.max(self.examined);
            // Before the switch, the tail's end must be the store's: a
            // ring nobody followed for a while stopped reading, and a
            // switch on its end would come before events already written.
            let store_head = (!self.caught_up).then(|| self.store.last_position());
            if let Some(page) = self.source.read_tail(&self.tail, from, PAGE)
                && (!page.at_end || store_head.is_none_or(|head| page.end >= head))
            {
                self.examined = page.next;
                // A feed that started past the tail's end (at the store's
                // newer head) has seen everything before its start.
                let head = page.end.max(from.0.checked_sub(1).map(Position));
                return Some(Page { events: page.events, at_end: page.at_end, head });
            }
        }
        let head = self.store.last_position();
        let (store, source, next) = (Arc::clone(&self.store), self.source.clone(), self.next);
        let next = match next {
            Cursor::Position(position) => Cursor::Position(position.max(self.examined)),
            revision => revision,
        };
        let page = crate::blocking::follow(move || read_page(&store, &source, next)).await;
        match page {
            Ok(Ok(events)) => Some(Page { at_end: events.len() < PAGE, events, head }),
            Ok(Err(error)) => {
                tracing::warn!(%error, "subscription read failed; closing it");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "subscription task failed; closing it");
                None
            }
        }
    }

    /// Sleeps until the head moves beyond `head`; `None` when the server
    /// stops first.
    async fn wait_beyond(&mut self, head: Option<Position>) -> Option<()> {
        let tail = self.tail.clone();
        let beyond = move |last: &Option<Position>| {
            tail.failed()
                || match (*last, head) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(last), Some(head)) => last > head,
                }
        };
        tokio::select! {
            moved = self.end.wait_for(beyond) => moved.ok().map(|_| ()),
            _ = self.stopping.wait_for(|stop| *stop) => None,
        }
    }
}

fn read_page(store: &Store, source: &Source, next: Cursor) -> Result<Vec<RecordedEvent>, quipu_core::Error> {
    let from = match next {
        Cursor::Position(position) => position.0,
        Cursor::Revision(revision) => revision.0,
    };
    match source.read(store, Some(from), Direction::Forwards, PAGE) {
        Err(quipu_core::Error::StreamNotFound { .. }) => Ok(Vec::new()),
        page => page,
    }
}

#[cfg(test)]
mod tests {
    use quipu_core::{AppendRequest, ExpectedRevision, Options, ProposedEvent};

    use super::*;

    fn append(store: &Store, stream: &str, n: u64) {
        let event = ProposedEvent::new(EventType::new("Noted").expect("valid"), n.to_le_bytes().to_vec());
        let stream = StreamName::new(stream).expect("valid");
        store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
    }

    /// A store in `dir` holding `count` events of `order-1`.
    fn store_of(dir: &std::path::Path, count: u64) -> Arc<Store> {
        let store = Arc::new(Store::open(dir, Options::default()).expect("open"));
        for n in 0..count {
            append(&store, "order-1", n);
        }
        store
    }

    fn event_position(item: Option<Item>) -> u64 {
        match item {
            Some(Item::Event(event)) => event.position.0,
            other => panic!("an event, not {other:?}"),
        }
    }

    /// A read that waits for a position waits until the store holds it,
    /// and no longer than asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reached_waits_for_the_position_and_no_longer_than_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 2);
        let (_stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping, TailOptions::default());
        let short = std::time::Duration::from_millis(50);
        assert!(live.reached(Position(1), short).await, "held already");
        assert!(!live.reached(Position(2), short).await, "not written yet");
        let waiting = {
            let live = live.clone();
            tokio::spawn(async move { live.reached(Position(2), std::time::Duration::from_secs(30)).await })
        };
        append(&store, "order-1", 2);
        assert!(waiting.await.expect("the waiting task"), "reached once written");
    }

    /// A client that appends once it has seen the history gets the switch
    /// before its event, never after it (KurrentDB's clients check this).
    #[tokio::test]
    async fn the_switch_comes_right_after_the_history_and_before_a_later_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 3);
        let (_stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping, TailOptions::default());
        for source in [Source::All, Source::Stream(StreamName::new("order-1").expect("valid"))] {
            let start = match source {
                Source::Stream(_) => Start::Revision(Revision(0)),
                _ => Start::Position(Position(0)),
            };
            let written = source.read(&store, None, Direction::Forwards, PAGE).expect("read").len();
            let mut feed = live.feed(Arc::clone(&store), source, start).expect("feed");
            let mut history = Vec::new();
            for _ in 0..written {
                history.push(event_position(feed.next_item().await));
            }
            let head = store.last_position().expect("a head");
            append(&store, "order-1", 9);
            match feed.next_item().await {
                Some(Item::CaughtUp(caught_up)) => assert_eq!(caught_up, Some(head), "caught up at the history's end"),
                other => panic!("the switch after {history:?}, not {other:?}"),
            }
            assert_eq!(event_position(feed.next_item().await), head.0 + 1, "then the live event");
        }
    }

    /// A feed's switch to live comes after every event written before it
    /// started, even when the tail's ring was left behind: nobody
    /// followed it for a while, so it stopped reading, and events were
    /// written meanwhile (a publisher run with --until-caught-up stopped at
    /// such a switch, hundreds of events short).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_switch_waits_for_what_was_written_while_nobody_followed_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 3);
        let (_stop, stopping) = watch::channel(false);
        let options = TailOptions { idle: std::time::Duration::from_secs(60), ..TailOptions::default() };
        let live = Live::follow(&store, stopping, options);
        // A first feed makes the tail keep a ring from the store's head.
        let mut first = live.feed(Arc::clone(&store), Source::All, Start::End).expect("feed");
        append(&store, "order-1", 3);
        loop {
            match first.next_item().await {
                Some(Item::Event(event)) => break assert_eq!(event.position.0, 3),
                Some(Item::CaughtUp(_)) => {}
                None => panic!("the feed ended"),
            }
        }
        drop(first);
        // The tail reads what the head moved to, then sees no follower.
        append(&store, "order-1", 4);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for n in 5..20 {
            append(&store, "order-1", n);
        }
        let head = store.last_position();
        // It starts inside the ring (a publisher's checkpoint, say).
        let mut second = live.feed(Arc::clone(&store), Source::All, Start::Position(Position(3))).expect("feed");
        let mut seen = Vec::new();
        loop {
            match second.next_item().await {
                Some(Item::Event(event)) => seen.push(event.position.0),
                Some(Item::CaughtUp(caught_up)) => {
                    assert_eq!(caught_up, head, "the switch is at the head written before the feed");
                    break;
                }
                None => panic!("the feed ended"),
            }
        }
        assert_eq!(seen, (3..20).collect::<Vec<u64>>(), "every event before the switch");
    }

    /// What is ready comes out without a read, in order, within the byte
    /// budget, and the switch follows it.
    #[tokio::test]
    async fn ready_events_come_out_together_within_a_byte_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 5);
        let (_stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping, TailOptions::default());
        let mut feed = live.feed(Arc::clone(&store), Source::All, Start::Position(Position(0))).expect("feed");
        assert_eq!(event_position(feed.next_item().await), 0);
        let positions = |events: Vec<RecordedEvent>| events.iter().map(|e| e.position.0).collect::<Vec<_>>();
        assert_eq!(positions(feed.take_ready(0)), Vec::<u64>::new(), "nothing within no budget");
        assert_eq!(positions(feed.take_ready(10)), [1, 2], "8-byte events until 10 bytes are passed");
        assert_eq!(positions(feed.take_ready(usize::MAX)), [3, 4]);
        assert_eq!(positions(feed.take_ready(usize::MAX)), Vec::<u64>::new(), "nothing more is read");
        assert!(matches!(feed.next_item().await, Some(Item::CaughtUp(Some(Position(4))))));
    }

    /// Feeds at the tail and behind it (a ring of a few events, a writer
    /// faster than some readers) yield exactly what the store reads for
    /// their source, in order, whether they started in the history or at
    /// the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_across_the_tail_yield_what_the_store_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 20);
        let (_stop, stopping) = watch::channel(false);
        let options = TailOptions {
            bytes_max: 2_000,
            interval_per_follower: std::time::Duration::ZERO,
            interval_max: std::time::Duration::ZERO,
            idle: std::time::Duration::from_secs(5),
        };
        let live = Live::follow(&store, stopping, options);
        let integration = Arc::new(IntegrationTypes::open(Arc::clone(&store)).expect("integration types"));
        integration.mark(&["Noted".to_string()]).await.expect("mark");
        let sources = [
            Source::All,
            Source::Category("order".to_string()),
            Source::Category("client".to_string()),
            Source::Type(EventType::new("Noted").expect("valid")),
            Source::Integration(integration),
        ];
        let starts = [Start::Position(Position(0)), Start::End];
        let mut readers = Vec::new();
        for source in &sources {
            for start in starts {
                let from = match start {
                    Start::Position(position) => position,
                    _ => store.last_position().map_or(Position(0), Position::next),
                };
                let mut feed = live.feed(Arc::clone(&store), source.clone(), start).expect("feed");
                let (count, mut counted) = watch::channel(None::<usize>);
                // Reads while the writer writes, until it has the count
                // the store reads once the writer is done.
                let reader = tokio::spawn(async move {
                    let mut got = Vec::new();
                    while counted.borrow().is_none_or(|count| got.len() < count) {
                        tokio::select! {
                            item = feed.next_item() => match item {
                                Some(Item::Event(event)) => got.push(event.position.0),
                                Some(Item::CaughtUp(_)) => {}
                                None => panic!("the feed ended"),
                            },
                            _ = counted.changed() => {}
                        }
                    }
                    got
                });
                readers.push((source.clone(), from, count, reader));
            }
        }
        tokio::task::spawn_blocking({
            let store = Arc::clone(&store);
            move || {
                for n in 0..300 {
                    append(&store, if n % 4 == 0 { "client-7" } else { "order-1" }, n);
                }
            }
        })
        .await
        .expect("writer");
        for (source, from, count, reader) in readers {
            let expected: Vec<u64> = source
                .read(&store, Some(from.0), Direction::Forwards, 10_000)
                .expect("read")
                .iter()
                .map(|e| e.position.0)
                .collect();
            count.send_replace(Some(expected.len()));
            let got = tokio::time::timeout(std::time::Duration::from_secs(20), reader)
                .await
                .expect("the feed keeps up")
                .expect("reader");
            assert_eq!(got, expected, "{source:?} from {from:?}");
        }
    }
}
