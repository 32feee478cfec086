//! Snapshots as the server serves them: writes, loads (the newest wanted
//! snapshot plus the events after it, in one call, also as of a past
//! moment), and the per-category policies that say when a new snapshot is
//! due.
//!
//! What it promises:
//! - A load uses the newest snapshot at or below the moment whose schema
//!   version is the one asked for, else the category policy's version,
//!   else any; the events returned are exactly those after it, up to the
//!   moment (in pages of `limit`).
//! - `snapshot_due` is true when the category has a policy and at least
//!   `every` events lie after the snapshot used.
//! - Policies are kept in the system stream `$snapshot-policies`, and
//!   follow what other writers record there on [`Snapshots::refresh`].
//!
//! The doors serve it as `quipu.v1.Snapshots` (gRPC) and under
//! `/v1/streams/{stream}/snapshots`, `/v1/streams/{stream}/load` and
//! `/v1/snapshot-policies` (HTTP).

use std::collections::BTreeMap;
use std::sync::Arc;

use quipu_core::{AsOf, Direction, RecordedEvent, Revision, Snapshot, Store, StreamName};
use serde::{Deserialize, Serialize};

use crate::folded_log::{Fold, FoldedLog};
use crate::{ApiError, ErrorCode};
use crate::{category::check_category, clock::now_us};

/// The system stream holding the policies.
pub const POLICIES_STREAM: &str = "$snapshot-policies";

/// Events a load returns after the snapshot when it names no limit.
pub const LOAD_LIMIT_DEFAULT: usize = 1000;

/// When a category's streams should get a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The category.
    pub category: String,
    /// A snapshot is due when this many events lie after the newest one.
    pub every: u64,
    /// The version new snapshots have, and the one loads use.
    pub schema_version: u32,
}

/// Records of `$snapshot-policies`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    PolicySet(Policy),
    PolicyRemoved { category: String },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::PolicySet(_) => "SnapshotPolicySet",
            Record::PolicyRemoved { .. } => "SnapshotPolicyRemoved",
        }
    }
}

/// Every policy, by category.
#[derive(Default)]
struct Policies(BTreeMap<String, Policy>);

impl Fold<Record> for Policies {
    fn fold(&mut self, record: Record) {
        match record {
            Record::PolicySet(policy) => {
                self.0.insert(policy.category.clone(), policy);
            }
            Record::PolicyRemoved { category } => {
                self.0.remove(&category);
            }
        }
    }
}

/// What a load returns.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The snapshot used, if any.
    pub snapshot: Option<Snapshot>,
    /// The events after it, up to the moment (at most the limit).
    pub events: Vec<RecordedEvent>,
    /// Whether the events reach the moment.
    pub complete: bool,
    /// The revision after the last event returned (or the snapshot).
    pub next_revision: u64,
    /// The stream's last revision as of the moment.
    pub last_revision: u64,
    /// The category's policy asks for a new snapshot.
    pub snapshot_due: bool,
    /// The version a new snapshot should have.
    pub schema_version: Option<u32>,
}

/// The server's snapshots: the store's, and the policies.
pub struct Snapshots {
    store: Arc<Store>,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
    policies: FoldedLog<Record, Policies>,
}

impl Snapshots {
    /// Loads the policies from `$snapshot-policies`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>, lifecycle: Arc<crate::lifecycle::Lifecycle>) -> Result<Snapshots, ApiError> {
        let policies = FoldedLog::open(Arc::clone(&store), POLICIES_STREAM)?;
        Ok(Snapshots { store, lifecycle, policies })
    }

    /// Takes in the policies other writers set or removed since.
    ///
    /// # Errors
    /// As [`Snapshots::open`]; the policies are then unchanged.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.policies.refresh().await
    }

    /// Stores a snapshot of `stream` at `revision`.
    ///
    /// # Errors
    /// 400 for a bad stream or a revision the stream does not have, 413
    /// for one too large, store errors.
    pub async fn write(&self, stream: &str, revision: u64, schema_version: u32, data: Vec<u8>) -> Result<(), ApiError> {
        let snapshot = Snapshot {
            stream: StreamName::new(stream)?,
            revision: Revision(revision),
            schema_version,
            data,
            written_at_us: now_us(),
        };
        let store = Arc::clone(&self.store);
        blocking(move || store.write_snapshot(&snapshot)).await
    }

    /// Loads `stream` as of `as_of` (`None`: now) from its newest wanted
    /// snapshot.
    ///
    /// # Errors
    /// 404 when the stream had no events then, store errors.
    pub async fn load(
        &self,
        stream: &str,
        schema_version: Option<u32>,
        as_of: Option<AsOf>,
        limit: usize,
    ) -> Result<Loaded, ApiError> {
        let stream = StreamName::readable(stream)?;
        // A tombstoned stream is refused; a wholly hidden one is not found;
        // hidden events are neither loaded nor folded into a usable snapshot.
        let first = self.lifecycle.visible_from(&stream)?.unwrap_or(0);
        let policy = self.policy(stream.category());
        let store = Arc::clone(&self.store);
        blocking(move || load(&store, &stream, first, schema_version, policy.as_ref(), as_of, limit)).await
    }

    /// A stream's snapshots, oldest first.
    ///
    /// # Errors
    /// 400 for a bad name, store errors.
    pub async fn list(&self, stream: &str) -> Result<Vec<Snapshot>, ApiError> {
        let stream = StreamName::readable(stream)?;
        let store = Arc::clone(&self.store);
        blocking(move || store.list_snapshots(&stream)).await
    }

    /// Deletes a stream's snapshots; returns how many there were.
    ///
    /// # Errors
    /// 400 for a bad name, store errors.
    pub async fn delete(&self, stream: &str) -> Result<u64, ApiError> {
        let stream = StreamName::readable(stream)?;
        let store = Arc::clone(&self.store);
        blocking(move || store.delete_snapshots(&stream)).await
    }

    /// Sets a category's policy.
    ///
    /// # Errors
    /// 400 for a bad category or `every` 0, store errors.
    pub async fn set_policy(&self, policy: Policy) -> Result<Policy, ApiError> {
        check_category(&policy.category)?;
        if policy.every == 0 {
            return Err(ApiError::new(ErrorCode::InvalidPolicy, "every must be at least 1 event"));
        }
        self.policies.writer().await?.append(Record::PolicySet(policy.clone())).await?;
        Ok(policy)
    }

    /// Removes a category's policy.
    ///
    /// # Errors
    /// 404 `policy_not_found`, store errors.
    pub async fn delete_policy(&self, category: &str) -> Result<(), ApiError> {
        let mut writer = self.policies.writer().await?;
        if !writer.state().0.contains_key(category) {
            return Err(ApiError::new(
                ErrorCode::PolicyNotFound,
                format!("category {category:?} has no snapshot policy"),
            ));
        }
        writer.append(Record::PolicyRemoved { category: category.to_string() }).await
    }

    /// Every policy, by category.
    #[must_use]
    pub fn policies(&self) -> Vec<Policy> {
        self.policies.state().0.values().cloned().collect()
    }

    fn policy(&self, category: &str) -> Option<Policy> {
        self.policies.state().0.get(category).cloned()
    }
}

fn load(
    store: &Store,
    stream: &StreamName,
    first_visible: u64,
    schema_version: Option<u32>,
    policy: Option<&Policy>,
    as_of: Option<AsOf>,
    limit: usize,
) -> Result<Loaded, quipu_core::Error> {
    let last = match as_of {
        Some(as_of) => store.revision_as_of(stream, as_of)?,
        None => store.stream_info(stream)?.last_revision,
    };
    let Some(last) = last.filter(|last| last.0 >= first_visible) else {
        return Err(quipu_core::Error::StreamNotFound { stream: stream.clone() });
    };
    let schema_version = schema_version.or(policy.map(|p| p.schema_version));
    // A snapshot that folded hidden events is not used.
    let snapshot = store.read_snapshot(stream, Some(last), schema_version)?.filter(|s| s.revision.0 >= first_visible);
    let from = snapshot.as_ref().map_or(first_visible, |s| s.revision.0 + 1);
    let mut events = if from <= last.0 {
        store.read_stream(stream, Some(Revision(from)), Direction::Forwards, limit)?
    } else {
        Vec::new()
    };
    events.retain(|e| e.revision <= last);
    let next_revision = events.last().map_or(from, |e| e.revision.0 + 1);
    let snapshot_due = policy.is_some_and(|p| last.0 + 1 - from >= p.every);
    Ok(Loaded {
        snapshot,
        events,
        complete: next_revision > last.0,
        next_revision,
        last_revision: last.0,
        snapshot_due,
        schema_version,
    })
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, quipu_core::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(store: Arc<Store>) -> Result<Snapshots, ApiError> {
        let lifecycle = Arc::new(crate::lifecycle::Lifecycle::open(Arc::clone(&store))?);
        Snapshots::open(store, lifecycle)
    }

    fn policy(category: &str, every: u64) -> Policy {
        Policy { category: category.into(), every, schema_version: 1 }
    }

    /// Two registries over one store (two nodes of a cluster): each takes
    /// in the policies the other sets or removes on refresh, and a change
    /// through either refreshes first.
    #[tokio::test]
    async fn policies_another_writer_records_are_taken_in_on_refresh_and_changes_follow_them() {
        let (_dir, _store, one, two) = crate::record_log::two_over_one_store(open);
        one.set_policy(policy("order", 10)).await.expect("set");
        assert!(two.policies().is_empty(), "not before a refresh");
        two.refresh().await.expect("refresh");
        assert_eq!(two.policies(), [policy("order", 10)]);

        one.set_policy(policy("customer", 5)).await.expect("set");
        two.delete_policy("customer").await.expect("one's policy, and two writes after it");
        two.set_policy(policy("order", 20)).await.expect("set");
        assert_eq!(two.policies(), [policy("order", 20)]);

        assert_eq!(one.policies(), [policy("customer", 5), policy("order", 10)], "not before a refresh");
        one.refresh().await.expect("refresh");
        assert_eq!(one.policies(), [policy("order", 20)]);
    }
}
