//! The gRPC service `quipu.v1.Snapshots` (see
//! `proto/quipu/v1/snapshots.proto`) over the server's [`Snapshots`].

use std::sync::Arc;

use quipu_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::wire::{recorded_event, status};
use quipu_node::as_of;
use quipu_node::snapshot::{LOAD_LIMIT_DEFAULT, Policy, Snapshots};

/// The service over the server's snapshots.
pub struct SnapshotsService {
    snapshots: Arc<Snapshots>,
}

impl SnapshotsService {
    /// The service.
    #[must_use]
    pub fn new(snapshots: Arc<Snapshots>) -> SnapshotsService {
        SnapshotsService { snapshots }
    }
}

fn snapshot_message(snapshot: quipu_core::Snapshot, with_data: bool) -> pb::Snapshot {
    pb::Snapshot {
        stream: snapshot.stream.to_string(),
        revision: snapshot.revision.0,
        schema_version: snapshot.schema_version,
        data: if with_data { snapshot.data } else { Vec::new() },
        written_at_us: snapshot.written_at_us,
    }
}

fn policy_message(policy: Policy) -> pb::SnapshotPolicy {
    pb::SnapshotPolicy { category: policy.category, every: policy.every, schema_version: policy.schema_version }
}

#[tonic::async_trait]
impl pb::snapshots_server::Snapshots for SnapshotsService {
    async fn write_snapshot(&self, request: Request<pb::Snapshot>) -> Result<Response<pb::Empty>, Status> {
        let s = request.into_inner();
        self.snapshots.write(&s.stream, s.revision, s.schema_version, s.data).await.map_err(status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn load(&self, request: Request<pb::LoadRequest>) -> Result<Response<pb::LoadResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of(r.to_revision, r.to_position, r.as_of_us, true).map_err(status)?;
        let limit = if r.limit == 0 { LOAD_LIMIT_DEFAULT } else { r.limit as usize };
        let loaded = self.snapshots.load(&r.stream, r.schema_version, as_of, limit).await.map_err(status)?;
        Ok(Response::new(pb::LoadResponse {
            snapshot: loaded.snapshot.map(|s| snapshot_message(s, true)),
            events: loaded.events.into_iter().map(recorded_event).collect(),
            complete: loaded.complete,
            next_revision: loaded.next_revision,
            last_revision: loaded.last_revision,
            snapshot_due: loaded.snapshot_due,
            schema_version: loaded.schema_version,
        }))
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::SnapshotStream>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let snapshots = self.snapshots.list(&request.into_inner().stream).await.map_err(status)?;
        let snapshots = snapshots.into_iter().map(|s| snapshot_message(s, false)).collect();
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots }))
    }

    async fn delete_snapshots(
        &self,
        request: Request<pb::SnapshotStream>,
    ) -> Result<Response<pb::DeleteSnapshotsResponse>, Status> {
        let deleted = self.snapshots.delete(&request.into_inner().stream).await.map_err(status)?;
        Ok(Response::new(pb::DeleteSnapshotsResponse { deleted }))
    }

    async fn set_snapshot_policy(
        &self,
        request: Request<pb::SnapshotPolicy>,
    ) -> Result<Response<pb::SnapshotPolicy>, Status> {
        let p = request.into_inner();
        let policy = Policy { category: p.category, every: p.every, schema_version: p.schema_version };
        Ok(Response::new(policy_message(self.snapshots.set_policy(policy).await.map_err(status)?)))
    }

    async fn list_snapshot_policies(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListSnapshotPoliciesResponse>, Status> {
        let policies = self.snapshots.policies().into_iter().map(policy_message).collect();
        Ok(Response::new(pb::ListSnapshotPoliciesResponse { policies }))
    }

    async fn delete_snapshot_policy(
        &self,
        request: Request<pb::SnapshotPolicyCategory>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.snapshots.delete_policy(&request.into_inner().category).await.map_err(status)?;
        Ok(Response::new(pb::Empty {}))
    }
}
