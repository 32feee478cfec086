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
//! Waiting costs no thread: the store's head listener feeds a
//! [`tokio::sync::watch`] channel ([`Live`]) that every feed awaits.
//! Before each read the feed notes the head; when the read finds nothing
//! it sleeps until the head moves beyond that note.

use std::collections::VecDeque;
use std::sync::Arc;

use quipu_core::{AsOf, Direction, EventType, Position, RecordedEvent, Revision, Store, StreamName, Tag};
use tokio::sync::watch;

use crate::ApiError;
use crate::integration::IntegrationTypes;
use crate::upcast::Upcasters;

/// Events read per catch-up page.
const PAGE: usize = 1000;

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

/// What every feed of a server shares: the head of the log as a watch
/// channel fed by the store's listener, and the server's stop signal.
#[derive(Clone)]
pub struct Live {
    head: watch::Receiver<Option<Position>>,
    stopping: watch::Receiver<bool>,
}

impl Live {
    /// Starts following `store`'s head; feeds end when `stopping` turns
    /// true.
    #[must_use]
    pub fn follow(store: &Store, stopping: watch::Receiver<bool>) -> Live {
        let (sender, head) = watch::channel(store.last_position());
        // An advance missed between these two lines is covered: feeds
        // compare against the store's own head before they wait.
        store.on_advance(Arc::new(move |last| {
            sender.send_replace(Some(last));
        }));
        Live { head, stopping }
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
    head: watch::Receiver<Option<Position>>,
    stopping: watch::Receiver<bool>,
    next: Cursor,
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
                return Err(ApiError::bad_request(
                    "invalid_start",
                    "a subscription to one stream starts at a revision, not a position",
                ));
            }
            (Source::Stream(stream), Start::End) => {
                Cursor::Revision(store.stream_info(stream)?.last_revision.map_or(Revision(0), Revision::next))
            }
            (Source::Stream(_), Start::Revision(revision)) => Cursor::Revision(revision),
            (_, Start::Revision(_)) => {
                return Err(ApiError::bad_request(
                    "invalid_start",
                    "only a subscription to one stream can start at a revision; use a position",
                ));
            }
            (_, Start::Position(position)) => Cursor::Position(position),
            (_, Start::End) => Cursor::Position(store.last_position().map_or(Position(0), Position::next)),
        };
        Ok(Feed {
            store,
            source,
            head: live.head.clone(),
            stopping: live.stopping.clone(),
            next,
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
            let head = self.store.last_position();
            let mut page = self.read_page().await?;
            let at_end = page.len() < PAGE;
            if let Some(upcasters) = &self.upcasters {
                upcasters.apply(&mut page);
            }
            if !page.is_empty() {
                if !self.caught_up && at_end {
                    self.end_read = Some(head);
                }
                debug_assert!(self.ready.is_empty(), "a page is read once the last one is out");
                // Takes the page's buffer as it is, no event moved.
                self.ready = VecDeque::from(page);
                continue;
            }
            if !self.caught_up {
                return Some(self.switch(head));
            }
            self.wait_beyond(head).await?;
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

    /// Reads the next page (see [`crate::blocking`]).
    async fn read_page(&self) -> Option<Vec<RecordedEvent>> {
        let (store, source, next) = (Arc::clone(&self.store), self.source.clone(), self.next);
        let page = crate::blocking::read(move || read_page(&store, &source, next)).await;
        match page {
            Ok(Ok(page)) => Some(page),
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
        let beyond = |last: &Option<Position>| match (*last, head) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(last), Some(head)) => last > head,
        };
        tokio::select! {
            moved = self.head.wait_for(beyond) => moved.ok().map(|_| ()),
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

    /// A client that appends once it has seen the history gets the switch
    /// before its event, never after it (KurrentDB's clients check this).
    #[tokio::test]
    async fn the_switch_comes_right_after_the_history_and_before_a_later_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 3);
        let (_stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping);
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

    /// What is ready comes out without a read, in order, within the byte
    /// budget, and the switch follows it.
    #[tokio::test]
    async fn ready_events_come_out_together_within_a_byte_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_of(dir.path(), 5);
        let (_stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping);
        let mut feed = live.feed(Arc::clone(&store), Source::All, Start::Position(Position(0))).expect("feed");
        assert_eq!(event_position(feed.next_item().await), 0);
        let positions = |events: Vec<RecordedEvent>| events.iter().map(|e| e.position.0).collect::<Vec<_>>();
        assert_eq!(positions(feed.take_ready(0)), Vec::<u64>::new(), "nothing within no budget");
        assert_eq!(positions(feed.take_ready(10)), [1, 2], "8-byte events until 10 bytes are passed");
        assert_eq!(positions(feed.take_ready(usize::MAX)), [3, 4]);
        assert_eq!(positions(feed.take_ready(usize::MAX)), Vec::<u64>::new(), "nothing more is read");
        assert!(matches!(feed.next_item().await, Some(Item::CaughtUp(Some(Position(4))))));
    }
}
