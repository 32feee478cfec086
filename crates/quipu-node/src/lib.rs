//! # quipu-node: the services of a Quipu node
//!
//! Everything a node does for its clients, over a [`quipu_core::Store`],
//! with no knowledge of any protocol: the doors (HTTP, gRPC, the KurrentDB
//! and Kafka protocols) translate their requests into these services'
//! calls and their [`ApiError`]s into their protocol's answers.
//!
//! - [`submission`]: every append goes through one admission (blocked
//!   categories, size limit, schemas, lifecycle) and awaits room in the
//!   sequencer's queue without blocking a runtime thread.
//! - [`feed`] and [`tail`]: catch-up then live subscriptions, the newest
//!   events read once for every follower; [`blocking`]: store reads off
//!   the async runtime, on a bounded pool.
//! - [`group`] (consumer groups), [`lifecycle`] (stream metadata, deletes,
//!   scavenge), [`schema`] (the schema registry), [`upcast`] (upcasting on
//!   read), [`snapshot`], [`projection`] (rebuilds and blocks),
//!   [`integration`] (integration event types): registries kept in system
//!   streams through [`record_log`], their memory the fold of their
//!   records ([`folded_log`]; projections fold theirs with their blocks);
//!   on a cluster's replica, [`refresher`] keeps them following what the
//!   other nodes write (and runs each consumer group on its home node).
//! - [`Node`] opens them all over one store, stops and closes them;
//!   [`read`] is the one read path (lifecycle, upcasting) every door takes.
//! - [`connection_cap`] and [`byte_budget`]: what bounds each door's
//!   open connections and the request bytes it buffers at once.
//! - [`ApiError`] with its [`ErrorCode`], each of one [`ErrorKind`]: the
//!   one closed list of failures every door maps exhaustively.

pub mod api_error;
pub mod blocking;
pub mod byte_budget;
pub mod category;
pub mod clock;
pub mod connection_cap;
pub mod error_code;
pub mod feed;
pub mod folded_log;
pub mod group;
pub mod integration;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod projection;
pub mod read;
pub mod record_log;
pub mod refresher;
pub mod schema;
pub mod snapshot;
pub mod submission;
pub mod tail;
pub mod upcast;

pub use api_error::{ApiError, conflict_error};
pub use error_code::{ErrorCode, ErrorKind};
pub use node::{Node, OpenError};
pub use read::{ReadRequest, Reads, Shape, as_of};
