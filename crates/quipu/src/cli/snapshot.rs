//! `quipu snapshot ...`: write, load, list and delete a stream's
//! snapshots, and manage the per-category policies that say when one is
//! due.

use anyhow::Context;
use quipu_client::{Client, Revision, SnapshotPolicy};
use serde_json::json;

use super::output::{Output, line};

/// A `quipu snapshot` command.
#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Store a stream's state after a revision.
    Write {
        /// The stream.
        stream: String,
        /// The revision of the last event the state folds.
        revision: u64,
        /// The version of the state's shape.
        #[arg(long)]
        schema_version: u32,
        /// The state, as JSON.
        #[arg(long)]
        data: String,
    },
    /// Show the snapshot a load would use and the events after it.
    Load {
        /// The stream.
        stream: String,
        /// Only snapshots of this version (default: the category policy's).
        #[arg(long)]
        schema_version: Option<u32>,
    },
    /// A stream's snapshots.
    List {
        /// The stream.
        stream: String,
    },
    /// Delete a stream's snapshots (its events stay).
    Delete {
        /// The stream.
        stream: String,
    },
    /// Per-category policies: when a new snapshot is due.
    Policy {
        /// What to do.
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// A `quipu snapshot policy` command.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Set a category's policy.
    Set {
        /// The category.
        category: String,
        /// A snapshot is due when this many events lie after the newest.
        #[arg(long)]
        every: u64,
        /// The version new snapshots have, and the one loads use.
        #[arg(long)]
        schema_version: u32,
    },
    /// Every policy.
    List,
    /// Remove a category's policy.
    Delete {
        /// The category.
        category: String,
    },
}

/// Runs a snapshot command.
///
/// # Errors
/// The server refused it or cannot be reached; `--data` is not JSON.
pub async fn run(client: &Client, output: &Output, command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Write { stream, revision, schema_version, data } => {
            let data: serde_json::Value = serde_json::from_str(&data).context("--data is not JSON")?;
            client.write_snapshot(&stream, Revision(revision), schema_version, data.to_string().into_bytes()).await?;
            if output.is_json() {
                return line(&json!({"stream": stream, "revision": revision, "schema_version": schema_version}));
            }
            println!("snapshot of {stream} at revision {revision} (schema version {schema_version}) written");
        }
        SnapshotCommand::Load { stream, schema_version } => {
            let load = client.load_from_snapshot(&stream, schema_version, None).await?;
            let snapshot = load.snapshot.as_ref().map(|s| {
                let data: serde_json::Value = serde_json::from_slice(&s.data)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&s.data).into_owned()));
                json!({"revision": s.revision.0, "schema_version": s.schema_version, "data": data})
            });
            if output.is_json() {
                line(
                    &json!({"snapshot": snapshot, "last_revision": load.last_revision.0, "snapshot_due": load.snapshot_due}),
                )?;
            } else {
                match &snapshot {
                    Some(s) => println!(
                        "snapshot at revision {} (schema version {}): {}",
                        s["revision"], s["schema_version"], s["data"]
                    ),
                    None => println!("no snapshot applies; the events start at revision 0"),
                }
                println!(
                    "{} events after it, to revision {}{}",
                    load.events.len(),
                    load.last_revision,
                    if load.snapshot_due { "; a new snapshot is due" } else { "" }
                );
            }
            output.events(&load.events)?;
        }
        SnapshotCommand::List { stream } => {
            let snapshots = client.list_snapshots(&stream).await?;
            for s in &snapshots {
                if output.is_json() {
                    line(
                        &json!({"stream": s.stream, "revision": s.revision.0, "schema_version": s.schema_version, "written_at_us": s.written_at_us}),
                    )?;
                } else {
                    println!(
                        "revision {:>10}  schema version {:>4}  written at {} µs",
                        s.revision, s.schema_version, s.written_at_us
                    );
                }
            }
            if snapshots.is_empty() && !output.is_json() {
                println!("(no snapshots)");
            }
        }
        SnapshotCommand::Delete { stream } => {
            let deleted = client.delete_snapshots(&stream).await?;
            if output.is_json() {
                return line(&json!({"deleted": deleted}));
            }
            println!("{deleted} snapshots of {stream} deleted; its events stay");
        }
        SnapshotCommand::Policy { command } => policy(client, output, command).await?,
    }
    Ok(())
}

async fn policy(client: &Client, output: &Output, command: PolicyCommand) -> anyhow::Result<()> {
    let print = |p: &SnapshotPolicy| {
        if output.is_json() {
            line(&json!({"category": p.category, "every": p.every, "schema_version": p.schema_version}))
        } else {
            println!("{:<24} every {:>8} events  schema version {}", p.category, p.every, p.schema_version);
            Ok(())
        }
    };
    match command {
        PolicyCommand::Set { category, every, schema_version } => {
            print(&client.set_snapshot_policy(SnapshotPolicy { category, every, schema_version }).await?)
        }
        PolicyCommand::List => client.list_snapshot_policies().await?.iter().try_for_each(print),
        PolicyCommand::Delete { category } => {
            client.delete_snapshot_policy(&category).await?;
            if !output.is_json() {
                println!("policy of {category} removed");
            }
            Ok(())
        }
    }
}
