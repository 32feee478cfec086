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
//! The pieces: the records' encoding, with the version of the decision
//! rules ([`proposal`]); the merge of partitions into one order
//! ([`merger`]); which partition a stream goes to ([`partitioner`]); the
//! topic settings a node requires ([`topic_settings`]); the replica that
//! joins a store to the topic ([`replica`]), in either [`cluster_mode`]
//! (the fenced writer is `fenced_writer`); which nodes are up
//! ([`membership`]); and a local broker for tests
//! and trying it out ([`local_broker`]).

pub mod cluster_mode;
mod fenced_writer;
pub mod local_broker;
pub mod membership;
pub mod merge_state;
pub mod merger;
pub mod partitioner;
pub mod proposal;
pub mod replica;
pub mod topic_id;
pub mod topic_settings;

pub use cluster_mode::{ClusterMode, ClusterModeError};
pub use local_broker::{LocalBroker, LocalBrokerError};
pub use membership::{Membership, Nodes};
pub use merge_state::{MergeState, MergeStateError};
pub use merger::{Entry, LaneStart, MergeError, MergeKey, Merger};
pub use partitioner::{PartitionError, PartitionKey, PartitionKeyError, Partitioner};
pub use proposal::{DecodeError, EncodeError, FORMAT, Proposal, RULES, Record, RequestId, Tick};
pub use replica::{ClusterError, Replica, ReplicaConfig, create_topic};
pub use topic_id::{TopicIdError, topic_id};
pub use topic_settings::{SettingProblem, TopicSettings, TopicSettingsError};
