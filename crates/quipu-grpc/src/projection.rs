//! The gRPC service `quipu.v1.Projections` (see
//! `proto/quipu/v1/projections.proto`) over the server's [`Projections`].

use std::sync::Arc;

use quipu_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::wire::status;
use quipu_node::projection::{ProjectionInfo, Projections, RebuildInfo, RebuildReport, RebuildState, Report};

/// The service over the server's projections.
pub struct ProjectionsService {
    projections: Arc<Projections>,
}

impl ProjectionsService {
    /// The service.
    #[must_use]
    pub fn new(projections: Arc<Projections>) -> ProjectionsService {
        ProjectionsService { projections }
    }
}

fn rebuild_state(state: RebuildState) -> pb::RebuildState {
    match state {
        RebuildState::Requested => pb::RebuildState::RebuildRequested,
        RebuildState::Running => pb::RebuildState::RebuildRunning,
        RebuildState::Done => pb::RebuildState::RebuildDone,
        RebuildState::Failed => pb::RebuildState::RebuildFailed,
        RebuildState::Cancelled => pb::RebuildState::RebuildCancelled,
    }
}

fn rebuild_info(info: &RebuildInfo) -> pb::RebuildInfo {
    pb::RebuildInfo {
        id: info.id,
        state: rebuild_state(info.state).into(),
        block_categories: info.block_categories.clone(),
        requested_at_us: info.requested_at_us,
        finished_at_us: info.finished_at_us,
        runner: info.runner.clone(),
        done: info.done,
        total: info.total,
        rate: info.rate,
        eta_seconds: info.eta_seconds,
        message: info.message.clone(),
    }
}

/// A projection's info as a message.
#[must_use]
pub fn projection_info(info: &ProjectionInfo) -> pb::ProjectionInfo {
    pb::ProjectionInfo {
        name: info.name.clone(),
        runner: info.runner.clone(),
        position: info.position,
        head: info.head,
        lag: info.lag,
        reported_ms_ago: info.reported_ms_ago,
        rebuild: info.rebuild.as_ref().map(rebuild_info),
    }
}

fn report(request: pb::ReportRequest) -> Report {
    use pb::rebuild_progress::Outcome;
    let rebuild = request.rebuild.and_then(|progress| {
        let outcome = match progress.outcome? {
            Outcome::RunningDone(done) => RebuildReport::Running { done },
            Outcome::Done(done) => RebuildReport::Done { done },
            Outcome::Failed(message) => RebuildReport::Failed { message },
        };
        Some((progress.id, outcome))
    });
    Report { runner: request.runner, position: request.position, rebuild }
}

#[tonic::async_trait]
impl pb::projections_server::Projections for ProjectionsService {
    async fn list_projections(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListProjectionsResponse>, Status> {
        let projections = self.projections.list().await.iter().map(projection_info).collect();
        Ok(Response::new(pb::ListProjectionsResponse { projections }))
    }

    async fn get_projection(
        &self,
        request: Request<pb::ProjectionName>,
    ) -> Result<Response<pb::ProjectionInfo>, Status> {
        let info = self.projections.info(&request.into_inner().name).await.map_err(status)?;
        Ok(Response::new(projection_info(&info)))
    }

    async fn rebuild(&self, request: Request<pb::RebuildRequest>) -> Result<Response<pb::ProjectionInfo>, Status> {
        let request = request.into_inner();
        let info = self.projections.request_rebuild(&request.name, &request.block_categories).await.map_err(status)?;
        Ok(Response::new(projection_info(&info)))
    }

    async fn cancel_rebuild(
        &self,
        request: Request<pb::ProjectionName>,
    ) -> Result<Response<pb::ProjectionInfo>, Status> {
        let info = self.projections.cancel_rebuild(&request.into_inner().name).await.map_err(status)?;
        Ok(Response::new(projection_info(&info)))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let request = request.into_inner();
        let name = request.name.clone();
        let assignment = self.projections.report(&name, report(request)).await.map_err(status)?;
        let rebuild = assignment.map(|a| pb::Assignment { id: a.id, block_categories: a.block_categories });
        Ok(Response::new(pb::ReportResponse { rebuild }))
    }
}
