//! Projections through the server (`quipu.v1.Projections`): ask for a
//! rebuild, follow its progress, cancel it; and the report a runner sends
//! to learn which rebuild to run (see the `quipu-projection` crate).

use quipu_proto::v1 as pb;

use crate::Client;
use crate::error::Error;
use crate::event::Position;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildState {
    /// Asked for; no runner has taken it yet.
    Requested,
    /// A runner is building the new read model.
    Running,
    /// Swapped in.
    Done,
    /// The runner gave up (see the message); the live model is as it was.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl RebuildState {
    /// Whether the rebuild is still to finish.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, RebuildState::Requested | RebuildState::Running)
    }
}

/// A rebuild and its progress, in positions of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildInfo {
    /// Its id.
    pub id: u64,
    /// Where it is.
    pub state: RebuildState,
    /// Categories closed to appends while it runs.
    pub block_categories: Vec<String>,
    /// When it was asked for, µs since the Unix epoch.
    pub requested_at_us: u64,
    /// When it finished.
    pub finished_at_us: Option<u64>,
    /// The runner building it.
    pub runner: Option<String>,
    /// The rebuild's next position.
    pub done: Position,
    /// The position after the log's last event (the final one once done).
    pub total: Position,
    /// Positions per second.
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Why it failed or was cancelled.
    pub message: String,
}

/// A projection as the server knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionInfo {
    /// Its name.
    pub name: String,
    /// The runner that reported last.
    pub runner: Option<String>,
    /// The live model's next position, as last reported.
    pub position: Option<Position>,
    /// The position after the log's last event.
    pub head: Position,
    /// Positions between the live model and the head.
    pub lag: Option<u64>,
    /// Milliseconds since the last report.
    pub reported_ms_ago: Option<u64>,
    /// The current or last rebuild.
    pub rebuild: Option<RebuildInfo>,
}

/// What a runner says about the rebuild it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildProgress {
    /// Still building; the rebuild's next position.
    Running(Position),
    /// Swapped in at this position.
    Done(Position),
    /// Gave up, and why.
    Failed(String),
}

/// A rebuild the server gives a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildAssignment {
    /// The rebuild's id.
    pub id: u64,
    /// Categories closed to appends while it runs.
    pub block_categories: Vec<String>,
}

fn rebuild_info(info: pb::RebuildInfo) -> RebuildInfo {
    let state = match pb::RebuildState::try_from(info.state) {
        Ok(pb::RebuildState::RebuildRunning) => RebuildState::Running,
        Ok(pb::RebuildState::RebuildDone) => RebuildState::Done,
        Ok(pb::RebuildState::RebuildFailed) => RebuildState::Failed,
        Ok(pb::RebuildState::RebuildCancelled) => RebuildState::Cancelled,
        Ok(pb::RebuildState::RebuildRequested) | Err(_) => RebuildState::Requested,
    };
    RebuildInfo {
        id: info.id,
        state,
        block_categories: info.block_categories,
        requested_at_us: info.requested_at_us,
        finished_at_us: info.finished_at_us,
        runner: info.runner,
        done: Position(info.done),
        total: Position(info.total),
        rate: info.rate,
        eta_seconds: info.eta_seconds,
        message: info.message,
    }
}

fn projection_info(info: pb::ProjectionInfo) -> ProjectionInfo {
    ProjectionInfo {
        name: info.name,
        runner: info.runner,
        position: info.position.map(Position),
        head: Position(info.head),
        lag: info.lag,
        reported_ms_ago: info.reported_ms_ago,
        rebuild: info.rebuild.map(rebuild_info),
    }
}

impl Client {
    /// Asks for a rebuild of projection `name`; appends to
    /// `block_categories` are refused until it ends (empty: none are).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or category;
    /// [`Error::Server`] with `FailedPrecondition` when a rebuild is
    /// pending or running.
    pub async fn rebuild_projection(&self, name: &str, block_categories: &[String]) -> Result<ProjectionInfo, Error> {
        let request = pb::RebuildRequest { name: name.to_string(), block_categories: block_categories.to_vec() };
        let response = self
            .call_with(&self.projections, |mut grpc| {
                let request = request.clone();
                async move { grpc.rebuild(request).await }
            })
            .await?;
        Ok(projection_info(response))
    }

    /// Cancels the projection's pending or running rebuild.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it has none.
    pub async fn cancel_rebuild(&self, name: &str) -> Result<ProjectionInfo, Error> {
        let request = pb::ProjectionName { name: name.to_string() };
        let response = self
            .call_with(&self.projections, |mut grpc| {
                let request = request.clone();
                async move { grpc.cancel_rebuild(request).await }
            })
            .await?;
        Ok(projection_info(response))
    }

    /// One projection, with its rebuild's progress.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the server knows no such projection.
    pub async fn projection_info(&self, name: &str) -> Result<ProjectionInfo, Error> {
        let request = pb::ProjectionName { name: name.to_string() };
        let response = self
            .call_with(&self.projections, |mut grpc| {
                let request = request.clone();
                async move { grpc.get_projection(request).await }
            })
            .await?;
        Ok(projection_info(response))
    }

    /// Every projection the server knows, by name.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_projections(&self) -> Result<Vec<ProjectionInfo>, Error> {
        let response = self
            .call_with(&self.projections, |mut grpc| async move { grpc.list_projections(pb::Empty {}).await })
            .await?;
        Ok(response.projections.into_iter().map(projection_info).collect())
    }

    /// A runner's report: runner `runner` of projection `name` stands at
    /// `position` and runs `rebuild` (id and progress). Returns the
    /// rebuild it should run; `None` means none (stop any).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or runner.
    pub async fn report_projection(
        &self,
        name: &str,
        runner: &str,
        position: Option<Position>,
        rebuild: Option<(u64, RebuildProgress)>,
    ) -> Result<Option<RebuildAssignment>, Error> {
        use pb::rebuild_progress::Outcome;
        let rebuild = rebuild.map(|(id, progress)| pb::RebuildProgress {
            id,
            outcome: Some(match progress {
                RebuildProgress::Running(done) => Outcome::RunningDone(done.0),
                RebuildProgress::Done(done) => Outcome::Done(done.0),
                RebuildProgress::Failed(message) => Outcome::Failed(message),
            }),
        });
        let position = position.map(|position| position.0);
        let request = pb::ReportRequest { name: name.to_string(), runner: runner.to_string(), position, rebuild };
        let response = self
            .call_with(&self.projections, |mut grpc| {
                let request = request.clone();
                async move { grpc.report(request).await }
            })
            .await?;
        Ok(response.rebuild.map(|a| RebuildAssignment { id: a.id, block_categories: a.block_categories }))
    }
}
