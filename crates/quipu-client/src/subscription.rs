//! [`Subscription`]: a live subscription as a [`Stream`] of
//! [`SubscriptionItem`]s: every matching event once, in order, with one
//! `CaughtUp` at the switch from history to live. The stream ends when the
//! server stops; resume with a new subscription from the position after
//! the last event seen.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use quipu_proto::v1 as pb;

use crate::event::Event;
use crate::{Error, wire};

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// The next event.
    Event(Event),
    /// Everything written before this point was sent; what follows is
    /// live. Carries the last position of `$all` at that moment.
    CaughtUp {
        /// Last position of `$all` when the subscription caught up.
        last_position: Option<u64>,
    },
}

/// A running subscription; dropping it ends it on the server too.
pub struct Subscription {
    inner: tonic::Streaming<pb::SubscribeResponse>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(inner: tonic::Streaming<pb::SubscribeResponse>) -> Subscription {
        Subscription { inner }
    }
}

fn item(response: pb::SubscribeResponse) -> Result<SubscriptionItem, Error> {
    use pb::subscribe_response::Message;
    match response.message {
        Some(Message::Event(event)) => Ok(SubscriptionItem::Event(wire::event(event)?)),
        Some(Message::CaughtUp(caught_up)) => Ok(SubscriptionItem::CaughtUp { last_position: caught_up.last_position }),
        None => Err(Error::Protocol("a subscription message with nothing in it".into())),
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(response))) => Poll::Ready(Some(item(response))),
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(wire::error(status)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
