//! [`Subscription`]: a live subscription as a [`Stream`] of
//! [`SubscriptionItem`]s: every matching event once, in order, with a
//! `CaughtUp` at the switch from history to live.
//!
//! It survives the server going away: when the connection breaks or the
//! server shuts down, it reconnects by the client's [`RetryPolicy`] and
//! resumes right after the last event it yielded (a new `CaughtUp`
//! follows the catch-up of each reconnection). Only when the retries run
//! out does it yield [`Error::Unavailable`] and end.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::client::Client;
use crate::delivery::Delivery;
use crate::event::{Event, Position};
use crate::retry::RetryPolicy;
use crate::{Error, Filter, Start, wire};

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// The next event.
    Event(Event),
    /// Everything written before this point was sent; what follows is
    /// live. Carries the last position of `$all` at that moment.
    CaughtUp {
        /// Last position of `$all` when the subscription caught up.
        last_position: Option<Position>,
    },
}

/// A running subscription; dropping it ends it on the server too.
pub struct Subscription {
    inner: Pin<Box<dyn Stream<Item = Result<SubscriptionItem, Error>> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// Where a subscription stands between messages.
struct Cursor {
    client: Client,
    retry: RetryPolicy,
    filter: Option<Filter>,
    /// Where the next (re)connection starts: after the last event yielded.
    start: Start,
    open: Option<tonic::Streaming<Delivery>>,
    /// Events of a batch message not yet yielded.
    batch: VecDeque<Event>,
    /// Set once a final error was yielded.
    done: bool,
}

impl Subscription {
    /// Starts following `filter` from `start` on `client`.
    pub(crate) async fn open(
        client: Client,
        retry: RetryPolicy,
        filter: Option<Filter>,
        start: Start,
    ) -> Result<Subscription, Error> {
        let open = client.open_subscription(filter.clone(), start, true).await?;
        let cursor = Cursor { client, retry, filter, start, open: Some(open), batch: VecDeque::new(), done: false };
        // Boxed: the cursor moves in and out of the stream's state once per
        // event, and by value it is large (the client's services, the
        // open call); copying it took a third of a catch-up's client CPU.
        let inner = futures_util::stream::unfold(Box::new(cursor), |mut cursor| async move {
            if cursor.done {
                return None;
            }
            let item = cursor.next_item().await;
            cursor.done = item.is_err();
            Some((item, cursor))
        });
        Ok(Subscription { inner: Box::pin(inner) })
    }
}

impl Cursor {
    /// The next item, reconnecting while the server is away.
    async fn next_item(&mut self) -> Result<SubscriptionItem, Error> {
        if let Some(event) = self.batch.pop_front() {
            return Ok(self.event(event));
        }
        let mut attempt = 0;
        loop {
            let broken = match self.open.as_mut() {
                Some(open) => match open.message().await {
                    Ok(Some(response)) => return self.item(response),
                    // The server ended the stream: it is shutting down.
                    Ok(None) => Error::Unavailable("the server ended the subscription".into()),
                    Err(status) => wire::error(status),
                },
                None => match self.client.open_subscription(self.filter.clone(), self.start, false).await {
                    Ok(open) => {
                        self.open = Some(open);
                        continue;
                    }
                    Err(error) => error,
                },
            };
            self.open = None;
            attempt += 1;
            if !broken.is_transient() || attempt >= self.retry.attempts {
                return Err(broken);
            }
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        }
    }

    /// Yields a message's first event (the rest wait in `batch`) or its
    /// switch to live.
    fn item(&mut self, delivery: Delivery) -> Result<SubscriptionItem, Error> {
        match delivery {
            Delivery::Events(events) => {
                self.batch.extend(events);
                match self.batch.pop_front() {
                    Some(event) => Ok(self.event(event)),
                    None => Err(Error::Protocol("a subscription batch with no event in it".into())),
                }
            }
            Delivery::CaughtUp(last_position) => {
                if let Start::End = self.start {
                    // Nothing yielded yet: resume after what was the end.
                    self.start = Start::Position(last_position.map_or(Position::START, Position::next));
                }
                Ok(SubscriptionItem::CaughtUp { last_position })
            }
            Delivery::Malformed(reason) => Err(Error::Protocol(reason)),
        }
    }
}

impl Cursor {
    /// Yields an event and moves the resume point past it.
    fn event(&mut self, event: Event) -> SubscriptionItem {
        self.start = match self.start {
            Start::Revision(_) => Start::Revision(event.revision.next()),
            Start::Position(_) | Start::End => Start::Position(event.position.next()),
        };
        SubscriptionItem::Event(event)
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
