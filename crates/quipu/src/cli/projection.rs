//! `quipu projection list|status`: where each projection into PostgreSQL
//! stands, read from its checkpoint table (`quipu_projections`) in the
//! read store, with its lag behind the server's log.

use anyhow::Context;
use quipu_client::{Client, Direction};
use quipu_projection::checkpoint::{self, Row};
use serde_json::json;

use super::output::{Output, line};

/// A `quipu projection` command.
#[derive(clap::Subcommand, Debug)]
pub enum ProjectionCommand {
    /// Every projection with its position, events applied and lag.
    List(DatabaseArgs),
    /// One projection.
    Status {
        /// The projection.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Where the read store is.
#[derive(clap::Args, Debug)]
pub struct DatabaseArgs {
    /// libpq connection string of the PostgreSQL read store.
    #[arg(long, env = "DATABASE_URL")]
    pub database: String,
}

/// Runs a projection command.
///
/// # Errors
/// PostgreSQL or the server cannot be reached; an unknown projection.
pub async fn run(client: &Client, output: &Output, command: ProjectionCommand) -> anyhow::Result<()> {
    let (database, name) = match &command {
        ProjectionCommand::List(database) => (database, None),
        ProjectionCommand::Status { name, database } => (database, Some(name.as_str())),
    };
    let (postgres, connection) = tokio_postgres::connect(&database.database, tokio_postgres::NoTls)
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
    let head = client.read_all(None, Direction::Backwards, 1).await?.first().map_or(0, |e| e.position + 1);
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
