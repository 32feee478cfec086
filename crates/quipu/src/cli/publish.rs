//! `quipu publish kafka`: publishes integration events from the server to
//! a topic of an external Kafka-protocol broker until Ctrl-C or SIGTERM
//! (or, with `--until-caught-up`, until every event written so far is
//! published). It prints where it starts, its progress each second while
//! it moves, and where it stopped.

use std::time::Duration;

use anyhow::Context;
use quipu_client::Client;
use quipu_publisher::{BATCH_MAX_DEFAULT, Progress, Publisher, Settings};
use serde_json::json;

use super::output::{Output, line};
use crate::publishing::PublishEntry;

/// How often progress is printed while it moves.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A `quipu publish` command.
#[derive(clap::Subcommand, Debug)]
pub enum PublishCommand {
    /// Publish events to a topic of an external Kafka-protocol broker, in
    /// order per stream (key = stream), from a checkpoint kept in Quipu.
    Kafka(KafkaArgs),
}

/// `quipu publish kafka`.
#[derive(clap::Args, Debug)]
pub struct KafkaArgs {
    /// Bootstrap servers of the broker, host:port[,host:port...].
    #[arg(long)]
    pub brokers: String,
    /// Destination topic (it must exist).
    #[arg(long)]
    pub topic: String,
    /// Event types to publish, comma-separated or repeated; the types
    /// marked with `quipu integration mark` when absent.
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Publisher name: its checkpoint stream is publisher-NAME [default:
    /// the topic].
    #[arg(long)]
    pub name: Option<String>,
    /// exactly-once (a transactional producer), idempotent, or
    /// at-least-once (for brokers without idempotent producers).
    #[arg(long, default_value = "exactly-once")]
    pub delivery: String,
    /// Events per batch (per transaction) at most.
    #[arg(long, default_value_t = BATCH_MAX_DEFAULT)]
    pub batch_max: usize,
    /// A Kafka client property KEY=VALUE (repeatable), e.g. security
    /// settings.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Stop once every event written so far is published.
    #[arg(long)]
    pub until_caught_up: bool,
}

impl KafkaArgs {
    /// The publisher's settings.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut properties = std::collections::BTreeMap::new();
        for property in &self.properties {
            let (key, value) =
                property.split_once('=').with_context(|| format!("--property {property:?} is not KEY=VALUE"))?;
            properties.insert(key.trim().to_string(), value.to_string());
        }
        let entry = PublishEntry {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            types: self.types.clone(),
            name: self.name.clone(),
            delivery: Some(self.delivery.clone()),
            batch_max: Some(self.batch_max),
            properties,
        };
        Ok(entry.settings()?)
    }
}

/// Runs a `quipu publish` command.
///
/// # Errors
/// Bad settings, the server or the broker cannot be reached, the topic
/// does not exist, another publisher has the name.
pub async fn run(client: &Client, output: &Output, command: PublishCommand) -> anyhow::Result<()> {
    let PublishCommand::Kafka(args) = command;
    let settings = args.settings()?;
    let mut publisher = Publisher::start(client.clone(), settings.clone()).await?;
    let mut progress = publisher.progress();
    let from = progress.borrow().next_position;
    if output.is_json() {
        line(&json!({
            "publishing": settings.topic, "brokers": settings.brokers, "name": settings.name,
            "delivery": settings.delivery.to_string(), "from_position": from,
        }))?;
    } else {
        println!(
            "publishing to {} on {} as {:?} ({}) from position {from}",
            settings.topic, settings.brokers, settings.name, settings.delivery
        );
    }
    let json = output.is_json();
    let reporter = tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let now = *progress.borrow_and_update();
            report(json, &now, false);
            tokio::time::sleep(REPORT_EVERY).await;
        }
    });
    let result = if args.until_caught_up {
        publisher.catch_up().await
    } else {
        publisher.run(crate::serve::stop_signal()?).await
    };
    reporter.abort();
    let last = result?;
    report(output.is_json(), &last, true);
    Ok(())
}

fn report(json: bool, progress: &Progress, last: bool) {
    if json {
        // A closed stdout (a pipe whose reader left) is no reason to stop.
        let _ = line(&json!({
            "published": progress.published, "batches": progress.batches,
            "already_there": progress.already_there, "next_position": progress.next_position, "stopped": last,
        }));
    } else {
        let what = if last { "stopped: " } else { "" };
        println!(
            "{what}published {} events in {} batches ({} already in the topic); next position {}",
            progress.published, progress.batches, progress.already_there, progress.next_position
        );
    }
}
