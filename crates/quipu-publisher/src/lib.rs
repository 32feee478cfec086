//! Quipu's integration event publisher: sends chosen events from Quipu to
//! a topic of an external Kafka-protocol broker, in order per stream, with
//! the stream as key, from a checkpoint kept in Quipu.
//!
//! - [`Publisher`] follows `$all` and produces; what it promises is on its
//!   module.
//! - [`Delivery`] says what a consumer of the topic sees after a crash:
//!   exactly once with a transactional producer, else once per partition
//!   with an idempotent one, else at least once.
//! - [`Landed`] reads what a crashed run left in the topic past the
//!   checkpoint, so a restart neither skips nor repeats it.
//! - [`checkpoint`] keeps the position in the stream `publisher-<name>`.
//! - [`record`] is the shape of a published record.

pub mod checkpoint;
mod delivery;
mod error;
mod landed;
mod publisher;
pub mod record;
mod selection;

pub use delivery::Delivery;
pub use error::Error;
pub use landed::Landed;
pub use publisher::{BATCH_MAX_DEFAULT, Progress, Publisher, Settings, TIMEOUT_DEFAULT};
pub use selection::Selection;
