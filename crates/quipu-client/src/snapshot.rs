//! Snapshots (`quipu.v1.Snapshots`): store a stream's folded state at a
//! revision, and load a stream as its newest snapshot plus the events
//! after it. [`Snapshotted`] aggregates do both through
//! [`Client::load_snapshotted`].

use quipu_proto::v1 as pb;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{Aggregate, Loaded};
use crate::client::Client;
use crate::event::{Event, Revision};
use crate::{AsOf, Direction, Error, wire};

/// A stream's state at a revision, as a client folded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream: String,
    /// The revision of the last event folded into it.
    pub revision: Revision,
    /// The version of the state's shape.
    pub schema_version: u32,
    /// The state (empty in listings).
    pub data: Vec<u8>,
    /// When it was written, µs since the Unix epoch.
    pub written_at_us: u64,
}

/// When a category's streams should get a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// The category.
    pub category: String,
    /// A snapshot is due when this many events lie after the newest one.
    pub every: u64,
    /// The version new snapshots have, and the one loads use.
    pub schema_version: u32,
}

/// A stream loaded from its newest wanted snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotLoad {
    /// The snapshot used, if any.
    pub snapshot: Option<Snapshot>,
    /// Every event after it, up to the moment.
    pub events: Vec<Event>,
    /// The stream's last revision as of the moment.
    pub last_revision: Revision,
    /// The category's policy asks for a new snapshot.
    pub snapshot_due: bool,
    /// The version a new snapshot should have.
    pub schema_version: Option<u32>,
}

/// An aggregate whose state can be stored as a snapshot (JSON).
pub trait Snapshotted: Aggregate + Serialize + DeserializeOwned {
    /// The version of the state's shape: bump it when the shape changes,
    /// and older snapshots are ignored.
    const SCHEMA_VERSION: u32;
}

fn snapshot(s: pb::Snapshot) -> Snapshot {
    Snapshot {
        stream: s.stream,
        revision: Revision(s.revision),
        schema_version: s.schema_version,
        data: s.data,
        written_at_us: s.written_at_us,
    }
}

fn policy(p: pb::SnapshotPolicy) -> SnapshotPolicy {
    SnapshotPolicy { category: p.category, every: p.every, schema_version: p.schema_version }
}

impl Client {
    /// Stores `data` as the state of `stream` after `revision`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a revision the stream does not have
    /// or a snapshot too large.
    pub async fn write_snapshot(
        &self,
        stream: &str,
        revision: Revision,
        schema_version: u32,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let request =
            pb::Snapshot { stream: stream.to_string(), revision: revision.0, schema_version, data, written_at_us: 0 };
        self.call_with(&self.snapshots, |mut grpc| {
            let request = request.clone();
            async move { grpc.write_snapshot(request).await }
        })
        .await?;
        Ok(())
    }

    /// Loads `stream` as of `as_of` (`None`: now) from its newest snapshot
    /// of `schema_version` (`None`: the category policy's, else any), with
    /// every event after it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the stream had no events then.
    pub async fn load_from_snapshot(
        &self,
        stream: &str,
        schema_version: Option<u32>,
        as_of: Option<AsOf>,
    ) -> Result<SnapshotLoad, Error> {
        let (to_revision, to_position, as_of_us) = wire::as_of(as_of);
        let request = pb::LoadRequest {
            stream: stream.to_string(),
            schema_version,
            to_revision,
            to_position,
            as_of_us,
            limit: 0,
        };
        let response = self
            .call_with(&self.snapshots, |mut grpc| {
                let request = request.clone();
                async move { grpc.load(request).await }
            })
            .await?;
        let mut events = wire::events(pb::ReadResponse { events: response.events })?;
        let last_revision = Revision(response.last_revision);
        let mut next = Revision(response.next_revision);
        while next <= last_revision {
            // The rest, up to the revision the load stood at.
            let bound = Some(AsOf::Revision(last_revision));
            let page = self.read_stream_as_of(stream, Some(next), Direction::Forwards, 1000, bound).await?;
            let Some(last) = page.last() else { break };
            next = last.revision.next();
            events.extend(page);
        }
        Ok(SnapshotLoad {
            snapshot: response.snapshot.map(snapshot),
            events,
            last_revision,
            snapshot_due: response.snapshot_due,
            schema_version: response.schema_version,
        })
    }

    /// Loads `A` from its newest snapshot of [`Snapshotted::SCHEMA_VERSION`]
    /// plus the events after it, as of `as_of` (`None`: now). When loading
    /// now and the category's policy says a snapshot is due, writes one of
    /// the loaded state. A stream with no events is `A::default()`.
    ///
    /// # Errors
    /// A read error, a snapshot that does not decode, an event `A` cannot
    /// apply, or a failed snapshot write.
    pub async fn load_snapshotted<A: Snapshotted>(
        &self,
        stream: &str,
        as_of: Option<AsOf>,
    ) -> Result<Loaded<A>, Error> {
        let load = match self.load_from_snapshot(stream, Some(A::SCHEMA_VERSION), as_of).await {
            Err(Error::NotFound(_)) => return Ok(Loaded { state: A::default(), last_revision: None }),
            load => load?,
        };
        let mut state: A = match &load.snapshot {
            Some(snapshot) => serde_json::from_slice(&snapshot.data)?,
            None => A::default(),
        };
        for event in &load.events {
            state.apply(event)?;
        }
        if load.snapshot_due && as_of.is_none() && !load.events.is_empty() {
            let data = serde_json::to_vec(&state)?;
            self.write_snapshot(stream, load.last_revision, A::SCHEMA_VERSION, data).await?;
        }
        Ok(Loaded { state, last_revision: Some(load.last_revision) })
    }

    /// A stream's snapshots, oldest first, without their data.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name.
    pub async fn list_snapshots(&self, stream: &str) -> Result<Vec<Snapshot>, Error> {
        let request = pb::SnapshotStream { stream: stream.to_string() };
        let response = self
            .call_with(&self.snapshots, |mut grpc| {
                let request = request.clone();
                async move { grpc.list_snapshots(request).await }
            })
            .await?;
        Ok(response.snapshots.into_iter().map(snapshot).collect())
    }

    /// Deletes a stream's snapshots (its events stay); returns how many.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name.
    pub async fn delete_snapshots(&self, stream: &str) -> Result<u64, Error> {
        let request = pb::SnapshotStream { stream: stream.to_string() };
        let response = self
            .call_with(&self.snapshots, |mut grpc| {
                let request = request.clone();
                async move { grpc.delete_snapshots(request).await }
            })
            .await?;
        Ok(response.deleted)
    }

    /// Sets a category's snapshot policy.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad category or `every` 0.
    pub async fn set_snapshot_policy(&self, policy: SnapshotPolicy) -> Result<SnapshotPolicy, Error> {
        let request = pb::SnapshotPolicy {
            category: policy.category,
            every: policy.every,
            schema_version: policy.schema_version,
        };
        let response = self
            .call_with(&self.snapshots, |mut grpc| {
                let request = request.clone();
                async move { grpc.set_snapshot_policy(request).await }
            })
            .await?;
        Ok(self::policy(response))
    }

    /// Every snapshot policy, by category.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_snapshot_policies(&self) -> Result<Vec<SnapshotPolicy>, Error> {
        let response = self
            .call_with(&self.snapshots, |mut grpc| async move { grpc.list_snapshot_policies(pb::Empty {}).await })
            .await?;
        Ok(response.policies.into_iter().map(policy).collect())
    }

    /// Removes a category's snapshot policy.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it has none.
    pub async fn delete_snapshot_policy(&self, category: &str) -> Result<(), Error> {
        let request = pb::SnapshotPolicyCategory { category: category.to_string() };
        self.call_with(&self.snapshots, |mut grpc| {
            let request = request.clone();
            async move { grpc.delete_snapshot_policy(request).await }
        })
        .await?;
        Ok(())
    }
}
