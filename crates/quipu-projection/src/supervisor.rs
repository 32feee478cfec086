//! [`Supervisor`]: runs a projection live and, beside it, the rebuilds
//! asked through the server (`quipu projection rebuild`, HTTP or gRPC).
//!
//! What it promises:
//! - It reports to the server every [`REPORT_EVERY`]: the runner's name,
//!   the live model's position, and the progress of the rebuild it runs.
//!   The answer names the rebuild to run; a new one starts on its own
//!   PostgreSQL connection while the live model keeps serving and moving,
//!   and one the answer no longer names (cancelled, or taken by another
//!   runner after this one went silent) is dropped before its swap.
//! - The rebuild's outcome (swapped in at a position, or the error) is
//!   reported as soon as it is known, and again until the server has it.
//! - The server being away does not stop the live model: reports fail,
//!   are logged, and are tried again.

use std::future::Future;
use std::time::Duration;

use quipu_client::{Client, Position, RebuildAssignment, RebuildProgress};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::projection::Projection;
use crate::runner::{BATCH_MAX_DEFAULT, Progress, Runner, check_name};

/// How often the supervisor reports to the server.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);

/// A rebuild this runner runs.
struct RebuildTask {
    id: u64,
    positions: watch::Receiver<Option<u64>>,
    handle: JoinHandle<Result<Progress, Error>>,
}

impl RebuildTask {
    fn progress(&self) -> (u64, RebuildProgress) {
        (self.id, RebuildProgress::Running(Position(self.positions.borrow().unwrap_or(0))))
    }
}

/// Runs one projection (made by `make`) live, and the rebuilds the server
/// asks of it.
pub struct Supervisor<F> {
    quipu: Client,
    database: String,
    make: F,
    batch_max: usize,
    runner: String,
}

impl<P, F> Supervisor<F>
where
    P: Projection + 'static,
    F: Fn() -> P,
{
    /// A supervisor reading from `quipu` and writing to the PostgreSQL
    /// database at `database` (a libpq connection string, without TLS);
    /// `make` makes the projection, once for the live model and once per
    /// rebuild.
    #[must_use]
    pub fn new(quipu: Client, database: impl Into<String>, make: F) -> Supervisor<F> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "runner".into());
        let runner = format!("{host}-{}", std::process::id());
        Supervisor { quipu, database: database.into(), make, batch_max: BATCH_MAX_DEFAULT, runner }
    }

    /// The same supervisor committing at most `events` events per
    /// transaction.
    #[must_use]
    pub fn batch_max(mut self, events: usize) -> Supervisor<F> {
        self.batch_max = events.max(1);
        self
    }

    /// The same supervisor reporting as `runner` (default: host and
    /// process id).
    #[must_use]
    pub fn runner_name(mut self, runner: impl Into<String>) -> Supervisor<F> {
        self.runner = runner.into();
        self
    }

    /// Runs until `stop` resolves (a rebuild then running is dropped; the
    /// next one starts over); returns where the live model stands.
    ///
    /// # Errors
    /// See [`Error`]: the live model's errors end the run; a rebuild's
    /// errors are reported to the server as its failure.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<Progress, Error> {
        let mut projection = (self.make)();
        let name = projection.name().to_string();
        check_name(&name)?;
        let mut live = Runner::new(self.quipu.clone(), connect(&self.database).await?).batch_max(self.batch_max);
        let live_position = live.positions();
        let (stop_live, live_stopping) = tokio::sync::oneshot::channel::<()>();
        let mut live_task = tokio::spawn(async move {
            live.run(&mut projection, async move {
                let _ = live_stopping.await;
            })
            .await
        });
        let mut stop = std::pin::pin!(stop);
        let mut rebuild: Option<RebuildTask> = None;
        let mut outcome: Option<(u64, RebuildProgress)> = None;
        let mut ticks = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                () = &mut stop => break,
                ended = &mut live_task => {
                    if let Some(task) = rebuild.take() {
                        task.handle.abort();
                    }
                    return ended.map_err(|e| Error::Stopped(e.to_string()))?;
                }
                ended = finished(&mut rebuild) => {
                    let id = rebuild.take().map_or(0, |task| task.id);
                    outcome = Some((id, rebuild_outcome(&name, id, ended)));
                }
                _ = ticks.tick() => {}
            }
            let position = *live_position.borrow();
            let report = outcome.clone().or_else(|| rebuild.as_ref().map(RebuildTask::progress));
            match self.quipu.report_projection(&name, &self.runner, position.map(Position), report).await {
                Ok(assignment) => {
                    outcome = None;
                    // A rebuild starts once the live model exists, so the
                    // two never both create it on a first run.
                    if position.is_some() {
                        self.follow(assignment, &mut rebuild).await?;
                    }
                }
                Err(error) => tracing::warn!(projection = %name, %error, "cannot report to the server; trying again"),
            }
        }
        if let Some(task) = rebuild {
            task.handle.abort();
        }
        let _ = stop_live.send(());
        live_task.await.map_err(|e| Error::Stopped(e.to_string()))?
    }

    /// Starts the rebuild the server assigned, dropping any other.
    async fn follow(
        &self,
        assignment: Option<RebuildAssignment>,
        rebuild: &mut Option<RebuildTask>,
    ) -> Result<(), Error> {
        if let (Some(assigned), Some(task)) = (&assignment, rebuild.as_ref())
            && assigned.id == task.id
        {
            return Ok(());
        }
        if let Some(task) = rebuild.take() {
            tracing::info!(rebuild = task.id, "the server no longer assigns this rebuild; dropping it");
            task.handle.abort();
        }
        if let Some(assigned) = assignment {
            tracing::info!(rebuild = assigned.id, blocking = ?assigned.block_categories, "starting a rebuild");
            let mut runner = Runner::new(self.quipu.clone(), connect(&self.database).await?).batch_max(self.batch_max);
            let positions = runner.positions();
            let mut projection = (self.make)();
            let handle = tokio::spawn(async move { runner.rebuild(&mut projection).await });
            *rebuild = Some(RebuildTask { id: assigned.id, positions, handle });
        }
        Ok(())
    }
}

/// Resolves when the running rebuild ends; never without one.
async fn finished(rebuild: &mut Option<RebuildTask>) -> Result<Result<Progress, Error>, tokio::task::JoinError> {
    match rebuild {
        Some(task) => (&mut task.handle).await,
        None => std::future::pending().await,
    }
}

fn rebuild_outcome(
    name: &str,
    id: u64,
    ended: Result<Result<Progress, Error>, tokio::task::JoinError>,
) -> RebuildProgress {
    match ended {
        Ok(Ok(progress)) => {
            tracing::info!(projection = name, rebuild = id, position = progress.position, "rebuilt and swapped in");
            RebuildProgress::Done(Position(progress.position))
        }
        Ok(Err(error)) => {
            tracing::warn!(projection = name, rebuild = id, %error, "the rebuild failed");
            RebuildProgress::Failed(error.to_string())
        }
        Err(error) => RebuildProgress::Failed(format!("the rebuild task ended: {error}")),
    }
}

/// Connects to PostgreSQL; the connection is driven by its own task.
async fn connect(database: &str) -> Result<tokio_postgres::Client, Error> {
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "a PostgreSQL connection ended");
        }
    });
    Ok(client)
}
