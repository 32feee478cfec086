//! Live subscriptions to `$all` as Server-Sent Events: catch up from a
//! position by reading pages of the log, then wait for the head to move
//! and read on from the next position. Every event is sent once, in
//! position order, across the switch from catch-up to live: the next read
//! always starts right after the last event sent, and an event is
//! readable only once its whole commit is indexed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use quipu_core::{Direction, Position, RecordedEvent, Store};

use crate::ApiError;
use crate::wire::EventJson;

/// Events read per catch-up page.
const PAGE: usize = 1000;
/// How long one wait for new events blocks a pool thread.
const WAIT: Duration = Duration::from_secs(1);

/// Where a subscription stands.
struct Cursor {
    store: Arc<Store>,
    /// Turns true when the server shuts down: the stream then ends.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Position of the next event to send.
    next: Position,
    ready: VecDeque<RecordedEvent>,
}

impl Cursor {
    /// The next event, reading or waiting as needed; `None` when the
    /// store fails (the stream then ends and the client reconnects from
    /// the last id it saw).
    async fn next_event(&mut self) -> Option<RecordedEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.next = event.position.next();
                return Some(event);
            }
            if *self.stopping.borrow() {
                return None;
            }
            let (store, from) = (Arc::clone(&self.store), self.next);
            let page = tokio::task::spawn_blocking(move || {
                let page = store.read_all(Some(from), Direction::Forwards, PAGE)?;
                if page.is_empty() {
                    // Live: sleep until something lands beyond what was sent.
                    let _ = store.wait_beyond(from.0.checked_sub(1).map(Position), WAIT);
                }
                Ok::<_, quipu_core::Error>(page)
            })
            .await;
            match page {
                Ok(Ok(page)) => self.ready.extend(page),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "subscription read failed; closing it");
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, "subscription task failed; closing it");
                    return None;
                }
            }
        }
    }
}

/// An SSE stream of `$all` from `from` (inclusive), catch-up then live.
/// Each message has `event: event`, `id: <position>` and the event's JSON.
/// The stream ends when `stopping` turns true (server shutdown), within
/// about a second.
pub fn subscribe_all(
    store: Arc<Store>,
    stopping: tokio::sync::watch::Receiver<bool>,
    from: Position,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let cursor = Cursor { store, stopping, next: from, ready: VecDeque::new() };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next_event().await?;
        let position = event.position.0;
        let message = match Event::default().event("event").id(position.to_string()).json_data(EventJson::from(event)) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "an event did not serialise; closing the subscription");
                return None;
            }
        };
        Some((Ok(message), cursor))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The position a subscription starts at: `from` when given, else the
/// `Last-Event-ID` a reconnecting client sends plus one, else 0.
///
/// # Errors
/// [`ApiError`] 400 for a `Last-Event-ID` that is not a position.
pub fn start_position(from: Option<u64>, last_event_id: Option<&str>) -> Result<Position, ApiError> {
    if let Some(from) = from {
        return Ok(Position(from));
    }
    match last_event_id {
        None => Ok(Position(0)),
        Some(id) => id.trim().parse::<u64>().map(|p| Position(p + 1)).map_err(|_| {
            ApiError::bad_request("invalid_last_event_id", format!("Last-Event-ID {id:?} is not a position"))
        }),
    }
}
