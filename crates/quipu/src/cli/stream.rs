//! `quipu stream meta|delete|tombstone`: a stream's metadata and deletes.

use quipu_client::{Client, Revision, StreamMetadata};
use serde_json::json;

use super::output::{Output, line};

/// A `quipu stream` command.
#[derive(clap::Subcommand, Debug)]
pub enum StreamCommand {
    /// Show a stream's metadata, or replace it when any option is given.
    Meta {
        /// The stream.
        stream: String,
        /// Only the last N events are visible.
        #[arg(long)]
        max_count: Option<u64>,
        /// Only events committed within this many seconds are visible.
        #[arg(long)]
        max_age: Option<u64>,
        /// Events before this revision are not visible.
        #[arg(long)]
        truncate_before: Option<u64>,
        /// JSON kept with the stream.
        #[arg(long)]
        custom: Option<String>,
    },
    /// Soft delete: the stream reads as not found until new events come.
    Delete {
        /// The stream.
        stream: String,
    },
    /// Delete for good: never read or written again.
    Tombstone {
        /// The stream.
        stream: String,
    },
}

/// Runs a stream command.
///
/// # Errors
/// The server refused it or cannot be reached; `--custom` is not JSON.
pub async fn run(client: &Client, output: &Output, command: StreamCommand) -> anyhow::Result<()> {
    let (stream, metadata) = match command {
        StreamCommand::Meta { stream, max_count, max_age, truncate_before, custom } => {
            let custom = custom
                .map(|c| serde_json::from_str(&c))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--custom is not JSON: {e}"))?;
            let metadata = if max_count.is_none() && max_age.is_none() && truncate_before.is_none() && custom.is_none()
            {
                client.stream_metadata(&stream).await?
            } else {
                let truncate_before = truncate_before.map(Revision);
                let set = StreamMetadata { max_count, max_age_s: max_age, truncate_before, custom, tombstoned: false };
                client.set_stream_metadata(&stream, &set).await?
            };
            (stream, metadata)
        }
        StreamCommand::Delete { stream } => {
            let metadata = client.delete_stream(&stream, false).await?;
            (stream, metadata)
        }
        StreamCommand::Tombstone { stream } => {
            let metadata = client.delete_stream(&stream, true).await?;
            (stream, metadata)
        }
    };
    let value = json!({
        "stream": stream,
        "max_count": metadata.max_count,
        "max_age_s": metadata.max_age_s,
        "truncate_before": metadata.truncate_before.map(|revision| revision.0),
        "custom": metadata.custom,
        "tombstoned": metadata.tombstoned,
    });
    if output.is_json() {
        return line(&value);
    }
    println!("{value}");
    Ok(())
}
