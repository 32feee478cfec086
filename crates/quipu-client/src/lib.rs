//! # quipu-client: Quipu from Rust
//!
//! An async client over gRPC. What it promises:
//!
//! - **Typed appends and reads**: [`Client::append`] with an
//!   [`ExpectedRevision`], [`Client::append_atomic`] over several streams
//!   with a DCB condition, [`Client::append_batch`] for throughput, and
//!   reads of a stream, `$all`, a category, type or tag.
//! - **Safe retries**: a [`NewEvent`]'s id is fixed when it is made; an
//!   append the client repeats (after a lost reply or while the server
//!   restarts, see [`RetryPolicy`]) is written once, and the repeat
//!   answers `already_written`.
//! - **Conflicts are data**: [`Error::Conflict`] carries each stream's
//!   actual revision.
//! - **Subscriptions are [`futures_util::Stream`]s** ([`Subscription`]):
//!   catch-up, then live, every event once, in order; they reconnect and
//!   resume after the last event seen when the server restarts.
//! - **Aggregates**: [`Client::execute`] loads a stream, folds it with
//!   your [`Aggregate`], lets you decide, appends with the loaded
//!   revision, and decides again on a conflict.
//! - **Consumer groups**: [`Client::create_group`] and friends manage
//!   them; [`Client::consume_group`] joins one as a [`GroupConsumer`] that
//!   receives events and acknowledges them.
//! - **Snapshots and the past**: [`Client::load_snapshotted`] loads a
//!   [`Snapshotted`] aggregate from its newest snapshot plus the events
//!   after it; [`Client::load_as_of`] folds the state as of a revision, a
//!   position or a time.
//! - **Projection rebuilds**: [`Client::rebuild_projection`] asks the
//!   runners of a projection (see `quipu-projection`) to rebuild it,
//!   [`Client::projection_info`] shows the progress.
//!
//! ```no_run
//! # async fn example() -> Result<(), quipu_client::Error> {
//! use quipu_client::{Client, ExpectedRevision, NewEvent};
//! let client = Client::connect("http://127.0.0.1:2113").await?;
//! let event = NewEvent::json("OrderPlaced", &serde_json::json!({"total": 42}))?;
//! let result = client.append("order-1", ExpectedRevision::NoStream, vec![event]).await?;
//! println!("written at position {}", result.first_position);
//! # Ok(())
//! # }
//! ```

mod aggregate;
mod append;
mod client;
mod delivery;
mod error;
mod event;
mod group;
mod lifecycle;
mod projection;
mod retry;
mod schema;
mod snapshot;
mod subscription;
mod transport;
mod wire;

pub use aggregate::{Aggregate, EXECUTE_ATTEMPTS_MAX, ExecuteError, Executed, Loaded};
pub use append::{Append, QueryItem};
pub use client::{BatchOutcome, Client, Direction};
pub use error::{Conflict, Error, StreamConflict};
pub use event::{AppendResult, Event, EventId, ExpectedRevision, NewEvent, Position, Revision, StreamInfo};
pub use group::{GroupConsumer, GroupEvent, GroupFilter, GroupInfo, GroupStart, GroupTuning, MemberInfo, NackAction};
pub use lifecycle::{ScavengeState, ScavengeStatus, StreamMetadata};
pub use projection::{ProjectionInfo, RebuildAssignment, RebuildInfo, RebuildProgress, RebuildState};
pub use retry::RetryPolicy;
pub use schema::{SchemaVersion, Upcaster};
pub use snapshot::{Snapshot, SnapshotLoad, SnapshotPolicy, Snapshotted};
pub use subscription::{Subscription, SubscriptionItem};

/// Which events a read or subscription selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Streams whose name before the first `-` is this.
    Category(String),
    /// Events of this type.
    EventType(String),
    /// Events carrying this tag.
    Tag(String),
    /// One stream (subscriptions only; reads use [`Client::read_stream`]).
    Stream(String),
    /// Integration events: events of the types marked with
    /// [`Client::mark_integration_types`] when the read runs.
    Integration,
}

/// A past moment to read at: the state of a stream, `$all` or a filter as
/// it stood then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Just after this revision (reads of one stream only).
    Revision(Revision),
    /// Just after this position of `$all`.
    Position(Position),
    /// Just after the last commit at or before this time, µs since the
    /// Unix epoch.
    Time(u64),
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this position of `$all` (inclusive).
    Position(Position),
    /// At this revision (inclusive); only with [`Filter::Stream`].
    Revision(Revision),
    /// With the next event written.
    End,
}
