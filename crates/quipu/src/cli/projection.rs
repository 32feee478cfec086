//! `quipu projection list|status|rebuild|cancel`: the projections that
//! run against the server (their runners report to it), and rebuilds of
//! them with a progress bar. With `--database` (or `DATABASE_URL`),
//! `list` and `status` read the checkpoint rows (`quipu_projections`) of
//! the read store instead.

use std::time::Duration;

use anyhow::Context;
use quipu_client::{Client, Direction, ProjectionInfo, RebuildInfo, RebuildState};
use quipu_projection::checkpoint::{self, Row};
use serde_json::{Value, json};

use super::output::{Output, line};

/// How often `rebuild` asks the server for progress.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A `quipu projection` command.
#[derive(clap::Subcommand, Debug)]
pub enum ProjectionCommand {
    /// Every projection with its runner, position, lag and rebuild.
    List(DatabaseArgs),
    /// One projection.
    Status {
        /// The projection.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Rebuilds a projection beside the live model, then swaps it in;
    /// shows progress until it ends (Ctrl-C stops watching, not the
    /// rebuild).
    Rebuild {
        /// The projection.
        name: String,
        /// Refuse appends to this category until the rebuild ends
        /// (blocking mode); repeat for several.
        #[arg(long = "block-category", value_name = "CATEGORY")]
        block_categories: Vec<String>,
        /// Ask for the rebuild and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// Cancels a projection's pending or running rebuild.
    Cancel {
        /// The projection.
        name: String,
    },
}

/// Where the read store is, for `list` and `status` from the checkpoint
/// rows.
#[derive(clap::Args, Debug)]
pub struct DatabaseArgs {
    /// libpq connection string of the PostgreSQL read store; without it,
    /// the server's view is shown.
    #[arg(long, env = "DATABASE_URL")]
    pub database: Option<String>,
}

/// Runs a projection command.
///
/// # Errors
/// PostgreSQL or the server cannot be reached; an unknown projection; a
/// rebuild that failed or was cancelled.
pub async fn run(client: &Client, output: &Output, command: ProjectionCommand) -> anyhow::Result<()> {
    match command {
        ProjectionCommand::List(DatabaseArgs { database: Some(database) }) => {
            from_read_store(client, output, &database, None).await
        }
        ProjectionCommand::Status { name, database: DatabaseArgs { database: Some(database) } } => {
            from_read_store(client, output, &database, Some(&name)).await
        }
        ProjectionCommand::List(DatabaseArgs { database: None }) => {
            print_infos(output, &client.list_projections().await?)
        }
        ProjectionCommand::Status { name, database: DatabaseArgs { database: None } } => {
            print_infos(output, &[client.projection_info(&name).await?])
        }
        ProjectionCommand::Rebuild { name, block_categories, detach } => {
            rebuild(client, output, &name, &block_categories, detach).await
        }
        ProjectionCommand::Cancel { name } => {
            let info = client.cancel_rebuild(&name).await?;
            if output.is_json() {
                return line(&info_json(&info));
            }
            println!("rebuild of {name} cancelled; the live model stays");
            Ok(())
        }
    }
}

/// Asks for a rebuild and, unless `detach`, follows it to its end.
async fn rebuild(
    client: &Client,
    output: &Output,
    name: &str,
    block_categories: &[String],
    detach: bool,
) -> anyhow::Result<()> {
    let info = client.rebuild_projection(name, block_categories).await?;
    let rebuild = info.rebuild.as_ref().context("the server answered without the rebuild")?;
    let id = rebuild.id;
    if output.is_json() {
        line(&info_json(&info))?;
    } else {
        let blocking = if block_categories.is_empty() {
            String::new()
        } else {
            format!("; appends to {} are refused until it ends", block_categories.join(", "))
        };
        println!("rebuild {id} of {name} requested{blocking}");
        if !detach {
            println!("(Ctrl-C stops watching; `quipu projection cancel {name}` stops the rebuild)");
        }
    }
    if detach {
        return Ok(());
    }
    let bar = progress_bar(output);
    let last = loop {
        tokio::time::sleep(POLL_EVERY).await;
        let info = client.projection_info(name).await?;
        let rebuild = info.rebuild.clone().filter(|r| r.id == id).context("the rebuild was replaced by another")?;
        if output.is_json() {
            line(&info_json(&info))?;
        }
        show(&bar, &info, &rebuild);
        if !rebuild.state.is_active() {
            break rebuild;
        }
    };
    bar.finish_and_clear();
    match last.state {
        RebuildState::Done => {
            if !output.is_json() {
                println!("rebuild {id} of {name}: done, swapped in at position {}", last.done);
            }
            Ok(())
        }
        RebuildState::Failed => anyhow::bail!("rebuild {id} of {name} failed: {}", last.message),
        _ => anyhow::bail!("rebuild {id} of {name} was cancelled: {}", last.message),
    }
}

/// The bar: hidden for JSON output and when stderr is not a terminal.
fn progress_bar(output: &Output) -> indicatif::ProgressBar {
    if output.is_json() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} positions  {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn show(bar: &indicatif::ProgressBar, info: &ProjectionInfo, rebuild: &RebuildInfo) {
    bar.set_length(rebuild.total.0);
    bar.set_position(rebuild.done.min(rebuild.total).0);
    let message = match rebuild.state {
        RebuildState::Requested => match info.reported_ms_ago {
            Some(ms) if ms < 5_000 => "waiting for the runner to take it".to_string(),
            _ => format!("waiting for a runner of {} to report", info.name),
        },
        _ => format!("{:.0} positions/s, ETA {}", rebuild.rate, eta(rebuild.eta_seconds)),
    };
    bar.set_message(message);
}

fn eta(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() => format!("{}s", s.ceil()),
        _ => "-".into(),
    }
}

fn rebuild_json(rebuild: &RebuildInfo) -> Value {
    json!({
        "id": rebuild.id,
        "state": state_name(rebuild.state),
        "block_categories": rebuild.block_categories,
        "requested_at_us": rebuild.requested_at_us,
        "finished_at_us": rebuild.finished_at_us,
        "runner": rebuild.runner,
        "done": rebuild.done.0,
        "total": rebuild.total.0,
        "rate": rebuild.rate,
        "eta_seconds": rebuild.eta_seconds,
        "message": rebuild.message,
    })
}

/// A projection in the shape of `GET /v1/projections/{name}`.
fn info_json(info: &ProjectionInfo) -> Value {
    json!({
        "name": info.name,
        "runner": info.runner,
        "position": info.position.map(|position| position.0),
        "head": info.head.0,
        "lag": info.lag,
        "reported_ms_ago": info.reported_ms_ago,
        "rebuild": info.rebuild.as_ref().map(rebuild_json),
    })
}

fn state_name(state: RebuildState) -> &'static str {
    match state {
        RebuildState::Requested => "requested",
        RebuildState::Running => "running",
        RebuildState::Done => "done",
        RebuildState::Failed => "failed",
        RebuildState::Cancelled => "cancelled",
    }
}

fn print_infos(output: &Output, infos: &[ProjectionInfo]) -> anyhow::Result<()> {
    if output.is_json() {
        return infos.iter().try_for_each(|info| line(&info_json(info)));
    }
    let dash = || "-".to_string();
    println!("{:<32} {:<24} {:>12} {:>10} {:>9}  REBUILD", "PROJECTION", "RUNNER", "POSITION", "LAG", "REPORTED");
    for info in infos {
        let rebuild = info
            .rebuild
            .as_ref()
            .map_or_else(dash, |r| format!("{} {} ({}/{})", r.id, state_name(r.state), r.done, r.total));
        println!(
            "{:<32} {:<24} {:>12} {:>10} {:>9}  {rebuild}",
            info.name,
            info.runner.clone().unwrap_or_else(dash),
            info.position.map_or_else(dash, |p| p.to_string()),
            info.lag.map_or_else(dash, |l| l.to_string()),
            info.reported_ms_ago.map_or_else(dash, |ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
        );
    }
    if infos.is_empty() {
        println!("(no projections have reported)");
    }
    Ok(())
}

/// `list` and `status` from the checkpoint rows of the read store.
async fn from_read_store(client: &Client, output: &Output, database: &str, name: Option<&str>) -> anyhow::Result<()> {
    let (postgres, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .context("connecting to the read store (--database)")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut rows = checkpoint::list(&postgres).await?;
    // Rebuilds in progress have their own rows; show them too.
    if let Some(name) = name {
        rows.retain(|row| row.name == name || row.name.starts_with(&format!("{name}__")));
        anyhow::ensure!(!rows.is_empty(), "no projection named {name:?} in quipu_projections");
    }
    let head = client.read_all(None, Direction::Backwards, 1).await?.first().map_or(0, |e| e.position.next().0);
    print(output, &rows, head)
}

fn print(output: &Output, rows: &[Row], head: u64) -> anyhow::Result<()> {
    if output.is_json() {
        return rows.iter().try_for_each(|row| {
            line(&json!({
                "name": row.name,
                "schema": row.checkpoint.schema,
                "position": row.checkpoint.position,
                "events": row.checkpoint.events,
                "lag": head.saturating_sub(row.checkpoint.position),
                "updated_at": row.updated_at,
            }))
        });
    }
    println!("{:<32} {:<32} {:>12} {:>12} {:>10}  UPDATED", "PROJECTION", "SCHEMA", "POSITION", "EVENTS", "LAG");
    for row in rows {
        println!(
            "{:<32} {:<32} {:>12} {:>12} {:>10}  {}",
            row.name,
            row.checkpoint.schema,
            row.checkpoint.position,
            row.checkpoint.events,
            head.saturating_sub(row.checkpoint.position),
            row.updated_at
        );
    }
    if rows.is_empty() {
        println!("(no projections)");
    }
    Ok(())
}
