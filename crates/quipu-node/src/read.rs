//! The one read path every door takes: reads of a stream see only what
//! its lifecycle leaves visible (a tombstoned stream is gone, events
//! before its truncation, past its max count or max age are hidden), and
//! events come at their types' current versions (upcast) unless the
//! reader asks for them as written. Subscriptions start where a stream's
//! visible events start and upcast as they go.
//!
//! A door that reads through [`Reads`] cannot forget either rule, and the
//! next one (authorization) has one place to go.

use std::sync::Arc;

use quipu_core::{AsOf, Direction, Position, RecordedEvent, Store};

use crate::ApiError;
use crate::feed::{Feed, Live, Source, Start};
use crate::lifecycle::Lifecycle;
use crate::upcast::Upcasters;

/// How a reader wants events' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// At their types' current versions (see [`Upcasters`]).
    Current,
    /// As written.
    Raw,
}

impl Shape {
    /// [`Shape::Raw`] when `raw`, else [`Shape::Current`].
    #[must_use]
    pub fn raw_if(raw: bool) -> Shape {
        if raw { Shape::Raw } else { Shape::Current }
    }
}

/// What a read asks for: up to `limit` events of a source from `from`
/// (inclusive: a revision for a stream, a position otherwise; absent: the
/// start forwards, the end backwards), as things stood at `as_of` (`None`:
/// now).
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// Which events.
    pub source: Source,
    /// Where to start.
    pub from: Option<u64>,
    /// Which way.
    pub direction: Direction,
    /// At most this many events.
    pub limit: usize,
    /// As of a past moment.
    pub as_of: Option<AsOf>,
    /// Upcast or as written.
    pub shape: Shape,
    /// Read only once this node holds this position (read your writes on
    /// any node of a cluster), waiting at most [`WAIT_FOR_POSITION_MAX`].
    pub wait_for: Option<Position>,
    /// Read only once this node holds every append acknowledged anywhere
    /// before the read came (a cluster's replica applies its shared log to
    /// the end first; a node alone holds them already), waiting at most
    /// [`WAIT_FOR_POSITION_MAX`].
    pub caught_up: bool,
}

/// How long a read waits for [`ReadRequest::wait_for`].
pub const WAIT_FOR_POSITION_MAX: std::time::Duration = std::time::Duration::from_secs(10);

impl ReadRequest {
    /// Up to `limit` events of `source` forwards from `from`, now, at
    /// their current versions.
    #[must_use]
    pub fn forwards(source: Source, from: Option<u64>, limit: usize) -> ReadRequest {
        ReadRequest {
            source,
            from,
            direction: Direction::Forwards,
            limit,
            as_of: None,
            shape: Shape::Current,
            wait_for: None,
            caught_up: false,
        }
    }
}

/// Reads of the store for every door, with lifecycle and upcasting
/// applied.
#[derive(Clone)]
pub struct Reads {
    store: Arc<Store>,
    live: Live,
    lifecycle: Arc<Lifecycle>,
    upcasters: Arc<Upcasters>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").finish_non_exhaustive()
    }
}

impl Reads {
    /// Reads of `store`, following `live` for subscriptions.
    #[must_use]
    pub fn new(store: Arc<Store>, live: Live, lifecycle: Arc<Lifecycle>, upcasters: Arc<Upcasters>) -> Reads {
        Reads { store, live, lifecycle, upcasters }
    }

    /// The events `request` asks for, read off the async runtime (see
    /// [`crate::blocking::read`]): a client waits on this answer.
    ///
    /// # Errors
    /// As [`Reads::read_now`]; `position_not_reached` when the node does
    /// not hold [`ReadRequest::wait_for`] in time; `internal` when the
    /// read task failed.
    pub async fn read(&self, request: ReadRequest) -> Result<Vec<RecordedEvent>, ApiError> {
        if request.caught_up {
            self.caught_up().await?;
        }
        if let Some(position) = request.wait_for {
            self.reached(position).await?;
        }
        let reads = self.clone();
        crate::blocking::read(move || reads.read_now(&request))
            .await
            .map_err(|e| ApiError::new(crate::ErrorCode::Internal, e.to_string()))?
    }

    /// The events `request` asks for, read on this thread (it may block
    /// on the disk: call it where that is allowed, as the reader pool's
    /// work).
    ///
    /// # Errors
    /// For a stream: `stream_deleted` when it is tombstoned,
    /// `stream_not_found` when nothing of it is visible; read errors.
    pub fn read_now(&self, request: &ReadRequest) -> Result<Vec<RecordedEvent>, ApiError> {
        let ReadRequest { source, from, direction, limit, as_of, shape, wait_for: _, caught_up: _ } = request;
        let mut events = match source {
            Source::Stream(stream) => self.lifecycle.read(stream, *from, *direction, *limit, *as_of)?,
            _ => source.read_as_of(&self.store, *from, *direction, *limit, *as_of)?,
        };
        self.shape(&mut events, *shape);
        Ok(events)
    }

    /// Waits until this node holds every append acknowledged anywhere
    /// before the call (see [`Store::sync`]).
    ///
    /// # Errors
    /// `position_not_reached` after [`WAIT_FOR_POSITION_MAX`]; the
    /// cluster's error when the node cannot learn where the log ends.
    pub async fn caught_up(&self) -> Result<(), ApiError> {
        let (reply, synced) = tokio::sync::oneshot::channel();
        self.store.sync(Box::new(move |result| {
            let _ = reply.send(result);
        }));
        match tokio::time::timeout(WAIT_FOR_POSITION_MAX, synced).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(_)) => Err(ApiError::from(quipu_core::Error::Closed)),
            Err(_) => Err(ApiError::new(
                crate::ErrorCode::PositionNotReached,
                format!(
                    "this node did not catch up with the cluster's log within {WAIT_FOR_POSITION_MAX:?}; try again"
                ),
            )),
        }
    }

    /// Waits until this node holds `position`.
    ///
    /// # Errors
    /// `position_not_reached` after [`WAIT_FOR_POSITION_MAX`].
    pub async fn reached(&self, position: Position) -> Result<(), ApiError> {
        if self.live.reached(position, WAIT_FOR_POSITION_MAX).await {
            return Ok(());
        }
        let here = self.store.last_position().map_or_else(|| "nothing".to_owned(), |p| format!("position {}", p.0));
        Err(ApiError::new(
            crate::ErrorCode::PositionNotReached,
            format!(
                "this node holds {here}, not yet position {} after {WAIT_FOR_POSITION_MAX:?}; try again, or another node",
                position.0
            ),
        ))
    }

    /// A subscription to `source` from `start`, starting no earlier than
    /// a stream's first visible event.
    ///
    /// # Errors
    /// `stream_deleted` for a tombstoned stream; as [`Feed::new`].
    pub fn subscribe(&self, source: Source, start: Start, shape: Shape) -> Result<Feed, ApiError> {
        let start = match &source {
            Source::Stream(stream) => self.lifecycle.subscription_start(stream, start)?,
            _ => start,
        };
        let feed = self.live.feed(Arc::clone(&self.store), source, start)?;
        Ok(match shape {
            Shape::Current => feed.upcasting(Arc::clone(&self.upcasters)),
            Shape::Raw => feed,
        })
    }

    /// Brings `events` to `shape`.
    pub fn shape(&self, events: &mut [RecordedEvent], shape: Shape) {
        if shape == Shape::Current {
            self.upcasters.apply(events);
        }
    }
}

/// The moment a read asks for: at most one of `to_revision` (streams
/// only), `to_position` and `as_of_us`.
///
/// # Errors
/// `invalid_as_of` for two of them, or a revision bound on a read
/// that is not of one stream.
pub fn as_of(
    to_revision: Option<u64>,
    to_position: Option<u64>,
    as_of_us: Option<u64>,
    stream: bool,
) -> Result<Option<AsOf>, ApiError> {
    use quipu_core::{Position, Revision};
    let invalid = |message: &str| Err(ApiError::new(crate::ErrorCode::InvalidAsOf, message));
    match (to_revision, to_position, as_of_us) {
        (None, None, None) => Ok(None),
        (Some(revision), None, None) if stream => Ok(Some(AsOf::Revision(Revision(revision)))),
        (Some(_), None, None) => invalid("to_revision bounds a read of one stream; use to_position or as_of_us"),
        (None, Some(position), None) => Ok(Some(AsOf::Position(Position(position)))),
        (None, None, Some(time_us)) => Ok(Some(AsOf::Time(time_us))),
        _ => invalid("give at most one of to_revision, to_position and as_of_us"),
    }
}
