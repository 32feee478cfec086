//! Cluster mode: several Quipu nodes share one Kafka topic as their log
//! (see `docs/cluster.md`).
//!
//! The topic holds requests, not events: a node that takes an append
//! produces a [`proposal::Proposal`] to the partition of its stream, and
//! every node consumes every partition, puts the records in one order that
//! depends on the topic's contents alone ([`merger::Merger`]), and decides
//! each proposal with the same engine decision it uses alone
//! (`quipu_core::decide`). Nodes fed the same topic decide the same, write
//! the same events at the same positions, and need no leader or lock.
//!
//! This crate holds, so far, the pieces that decide nothing by
//! themselves: the records' encoding, with the version of the decision
//! rules; the merge of partitions into one order; which partition a
//! stream goes to; and the topic settings a node requires.

pub mod merger;
pub mod partitioner;
pub mod proposal;
pub mod replica;
pub mod topic_settings;

pub use merger::{Entry, LaneStart, MergeError, MergeKey, Merger};
pub use partitioner::{PartitionError, PartitionKey, PartitionKeyError, Partitioner};
pub use proposal::{DecodeError, EncodeError, FORMAT, Proposal, RULES, Record, RequestId, Tick};
pub use replica::{ClusterError, Replica, ReplicaConfig};
pub use topic_settings::{SettingProblem, TopicSettings, TopicSettingsError};
