//! Places in the log and in a stream ([`Position`], [`Revision`]) and the
//! [`ExpectedRevision`] an append states: the values layer's types
//! (`quipu-types`), which the engine uses as its own.

pub use quipu_types::{ExpectedRevision, ExpectedRevisionError, Position, Revision};
