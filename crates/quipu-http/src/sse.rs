//! Subscriptions as Server-Sent Events: a [`Feed`] rendered as `event`
//! messages with the position as their id, so a reconnecting browser or
//! client resumes with `Last-Event-ID`.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use quipu_core::{Position, Revision};

use crate::error::HttpError;
use crate::wire::EventJson;
use quipu_node::feed::{Feed, Item, Start};
use quipu_node::{ApiError, ErrorCode};

/// The feed as an SSE stream: each event is a message with `event: event`,
/// `id: <position>` (`<revision>` for a stream's feed, matching what
/// `from` means there) and the event's JSON. The switch to live is not
/// sent (the HTTP API has no message for it). The stream ends with the
/// feed.
pub fn events(feed: Feed) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            let Item::Event(event) = feed.next_item().await? else { continue };
            let id = if feed.is_by_revision() { event.revision.0 } else { event.position.0 };
            // Rendered into one string first: the message's own JSON writer
            // checks every small write for newlines, which cost more than
            // the rendering.
            let json = match serde_json::to_string(&EventJson::from(*event)) {
                Ok(json) => json,
                Err(error) => {
                    tracing::error!(%error, "an event did not serialise; closing the subscription");
                    return None;
                }
            };
            let message = Event::default().event("event").id(id.to_string()).data(json);
            return Some((Ok(message), feed));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Where a subscription starts: `from` when given, else just after the
/// `Last-Event-ID` a reconnecting client sends, else the beginning. Both
/// are revisions for a stream's feed and positions otherwise.
///
/// # Errors
/// [`ApiError`] 400 for a `Last-Event-ID` that is not a number.
pub fn start(from: Option<u64>, last_event_id: Option<&str>, by_revision: bool) -> Result<Start, HttpError> {
    let from = match (from, last_event_id) {
        (Some(from), _) => from,
        (None, None) => 0,
        (None, Some(id)) => id.trim().parse::<u64>().ok().and_then(|n| n.checked_add(1)).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidLastEventId, format!("Last-Event-ID {id:?} is not a position or revision"))
        })?,
    };
    Ok(if by_revision { Start::Revision(Revision(from)) } else { Start::Position(Position(from)) })
}
