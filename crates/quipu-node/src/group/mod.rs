//! Consumer groups (persistent subscriptions): named subscriptions whose
//! checkpoint Quipu keeps in its own log, shared by competing consumers.
//!
//! Modules: `settings` (what defines a group, checked), `dispatcher` (who
//! gets which event; per-stream order, retries, parking, the checkpoint
//! watermark; synchronous and tested on its own), `actor` (the task that
//! runs one group against the store), `registry` (every group, kept in
//! `$groups`), `session` (members that consume over HTTP, which has no
//! connection to watch), `failover` (groups of a cluster node that is
//! down move to one that is up).

mod actor;
pub mod dispatcher;
pub mod failover;
mod registry;
pub mod session;
pub mod settings;

pub use actor::Feeds;
pub use failover::{Failover, NodesUp};
pub use registry::{GROUPS_STREAM, GroupInfo, Groups, Membership};
