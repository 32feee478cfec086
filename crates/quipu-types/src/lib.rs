//! # quipu-types: the names and values every part of Quipu shares
//!
//! The values layer (DESIGN.md): types and rules defined once and used by
//! the engine, the doors, the publisher and the tools, so that none of them
//! needs the engine to speak about a position or a topic.
//!
//! - [`name`]: [`StreamName`], [`EventType`] and [`Tag`], with their
//!   rules, checked once where a name is made;
//! - [`id`]: [`EventId`], the client-chosen id of an event;
//! - [`position`]: [`Position`] in `$all`, [`Revision`] in a stream, and
//!   the [`ExpectedRevision`] of an append, with its one text form (`any`,
//!   `no_stream`, `exists` or a number) for every door and the client;
//! - [`topic`]: Kafka's topic name rules and default partitioner, for the
//!   Kafka door and the publisher alike.

pub mod id;
pub mod name;
pub mod position;
pub mod topic;

pub use id::{EventId, EventIdError};
pub use name::{EventType, NameError, NameKind, StreamName, Tag};
pub use position::{ExpectedRevision, ExpectedRevisionError, Position, Revision};
