//! # quipu-core: the storage engine of Quipu
//!
//! What it promises:
//!
//! - **Acknowledged means durable.** [`Store::append`] returns
//!   [`AppendOutcome::Written`] only after the record is fdatasync'ed. An
//!   append is one log record: after a crash it is wholly present or
//!   wholly absent.
//! - **Optimistic concurrency.** Each stream write carries an
//!   [`ExpectedRevision`]; an append may span streams and carry a DCB
//!   [`Condition`]. All conditions hold and everything is written, or the
//!   outcome is a [`Conflict`] naming each failed stream with its actual
//!   revision (or the conflicting position) and nothing is written.
//! - **Idempotency.** Re-sending an append with the same event ids writes
//!   nothing and returns the first result ([`AppendOutcome::AlreadyWritten`]).
//! - **Determinism.** Decisions are a pure function of the log order
//!   (`engine`): two stores fed the same appends decide and read alike.
//! - **The log is the truth; indexes are derived.** Stream, `$all`,
//!   category, type, tag and id reads go through an on-disk index with a
//!   bounded cache, rebuilt from the log when missing or behind.
//! - **Corruption is never served.** Every record read is checked against
//!   its CRC32C; a torn tail is cut on open, any other bad record is an
//!   [`Error::Corrupt`] naming the segment file and offset.
//! - **Deletion reclaims space.** [`Store::scavenge`] rewrites closed
//!   segments without the events a caller dooms, online and crash-safe;
//!   positions, revisions and stream heads stay as they were.
//! - **Fail-stop.** After a failed write or fdatasync the store refuses
//!   appends ([`Error::StoreFailed`]); reads go on.
//!
//! ```
//! use quipu_core::{AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, Options, ProposedEvent, Store, StreamName};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), Options::default())?;
//! let order = StreamName::new("order-42")?;
//! let placed = ProposedEvent::new(EventType::new("OrderPlaced")?, r#"{"total":12}"#);
//! let request = AppendRequest::to_stream(order.clone(), ExpectedRevision::NoStream, vec![placed]);
//! let AppendOutcome::Written(result) = store.append(request.clone())? else { unreachable!() };
//! // A retry (say, after a lost reply) is recognised by its event ids.
//! assert_eq!(store.append(request)?, AppendOutcome::AlreadyWritten(result));
//! let events = store.read_stream(&order, None, Direction::Forwards, 100)?;
//! assert_eq!(events[0].event_type.as_str(), "OrderPlaced");
//! # Ok(())
//! # }
//! ```
//!
//! Layers, bottom up: [`log`] (segments, records, recovery), [`index`],
//! `engine` (decisions), `sequencer` (the one writer, group commit),
//! `read`, and [`Store`] tying them together. No async, no network.

mod append;
mod clock;
mod engine;
mod error;
mod event;
mod fault;
mod head;
mod head_cache;
pub mod index;
mod intake;
pub mod log;
mod options;
mod position;
mod proposer;
mod read;
mod replay;
mod scavenge;
mod sequencer;
mod snapshot;
mod state;
mod stats;
mod store;
mod temporal;
mod verify;

pub use append::{
    AppendOutcome, AppendRequest, AppendResult, Condition, Conflict, Query, QueryItem, StreamConflict, StreamResult,
    StreamWrite,
};
pub use clock::Clock;
pub use engine::{Decision, Origin, StateView, decide};
pub use error::Error;
pub use event::{
    EVENT_TAGS_MAX, EventId, EventIdError, EventType, LABEL_BYTES_MAX, NameError, NameKind, ProposedEvent,
    RecordedEvent, STREAM_NAME_BYTES_MAX, StreamName, Tag,
};
pub use fault::FaultPlan;
pub use head::HeadListener;
pub use log::record::Source;
pub use options::{BATCH_BYTES_CEILING, Options, SyncMode};
pub use position::{ExpectedRevision, ExpectedRevisionError, Position, Revision};
pub use proposer::{Proposer, SyncReply};
pub use read::{Direction, StreamInfo};
pub use scavenge::{Doomed, ScavengeProgress};
pub use sequencer::{Applied, Reply};
pub use snapshot::Snapshot;
pub use stats::{CommitMeter, CommitStats, process_cpu_ns, thread_cpu_ns};
pub use store::{STORE_FORMAT_VERSION, Store, write_durably};
pub use temporal::AsOf;
pub use verify::{Problem, Verification, VerifyProgress};
