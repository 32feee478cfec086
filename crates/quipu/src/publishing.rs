//! Integration event publishers run by the binary: the shape of a
//! publisher in the config file (`[[publish]]`), and [`Publishers`], the
//! ones `quipu serve` runs beside the server until it stops.
//!
//! A publisher in the server is a client of the server like any other (it
//! connects to the server's own gRPC address), so it behaves exactly as
//! `quipu publish kafka` does. When one fails (the broker is away, say) it
//! is started again after a pause that doubles up to
//! [`RESTART_PAUSE_MAX`]; one fenced by another publisher of the same name
//! stays stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use quipu_client::Client;
use quipu_publisher::{Delivery, Error, Publisher, Selection, Settings};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Longest pause before a failed publisher is started again.
pub const RESTART_PAUSE_MAX: Duration = Duration::from_secs(30);

/// How long a stopping server waits for its publishers to finish their
/// batch.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A publisher as the config file and the command line give it:
///
/// ```toml
/// [[publish]]
/// brokers = "kafka-1:9092,kafka-2:9092"
/// topic = "orders.integration"
/// types = ["OrderShipped", "OrderCancelled"]  # default: the marked integration types
/// name = "orders"                              # default: the topic
/// delivery = "exactly-once"                    # or "idempotent", "at-least-once"
/// batch_max = 1000
/// properties = { "security.protocol" = "ssl" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishEntry {
    /// Bootstrap servers.
    pub brokers: String,
    /// Destination topic.
    pub topic: String,
    /// Event types; the marked integration types when empty.
    #[serde(default)]
    pub types: Vec<String>,
    /// Publisher name; the topic when absent.
    pub name: Option<String>,
    /// `exactly-once` (default), `idempotent` or `at-least-once`.
    pub delivery: Option<String>,
    /// Events per batch at most.
    pub batch_max: Option<usize>,
    /// More Kafka client properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl PublishEntry {
    /// The publisher's settings.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting that is wrong.
    pub fn settings(&self) -> Result<Settings, Error> {
        let name = self.name.clone().unwrap_or_else(|| self.topic.clone());
        let mut settings = Settings::new(name, &self.brokers, &self.topic);
        settings.selection = Selection::of_types(&self.types)?;
        if let Some(delivery) = &self.delivery {
            settings.delivery = delivery.parse::<Delivery>()?;
        }
        if let Some(batch_max) = self.batch_max {
            settings.batch_max = batch_max;
        }
        settings.properties = self.properties.clone().into_iter().collect();
        settings.validate()?;
        Ok(settings)
    }
}

/// The publishers a server runs.
#[derive(Debug)]
pub struct Publishers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Publishers {
    /// Starts one task per publisher, each reading from the server at
    /// `grpc` (an address such as `127.0.0.1:2113`).
    #[must_use]
    pub fn start(all: Vec<Settings>, grpc: std::net::SocketAddr) -> Publishers {
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for settings in all {
            tasks.spawn(supervise(settings, format!("http://{grpc}"), stop.subscribe()));
        }
        Publishers { stop, tasks }
    }

    /// Stops every publisher after its batch in hand (waiting at most
    /// [`STOP_WAIT`]).
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::warn!("publishers did not stop in time; their next run resumes from their checkpoints");
            self.tasks.abort_all();
        }
    }
}

/// Runs one publisher until `stop`, starting it again after a failure.
async fn supervise(settings: Settings, server: String, mut stop: watch::Receiver<bool>) {
    let mut pause = Duration::from_secs(1);
    loop {
        let mut stopped = stop.clone();
        let run = async {
            let client = Client::connect(server.clone()).await?;
            let mut publisher = Publisher::start(client, settings.clone()).await?;
            publisher
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        };
        match run.await {
            Ok(progress) => {
                tracing::info!(publisher = %settings.name, ?progress, "publisher stopped");
                return;
            }
            Err(error @ (Error::Fenced { .. } | Error::TopicChanged { .. })) => {
                tracing::error!(publisher = %settings.name, %error, "publisher stopped for good");
                return;
            }
            Err(error) => {
                tracing::warn!(publisher = %settings.name, %error, ?pause, "publisher failed; starting it again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        pause = (pause * 2).min(RESTART_PAUSE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> PublishEntry {
        PublishEntry {
            brokers: "127.0.0.1:9092".into(),
            topic: "orders.integration".into(),
            types: vec![],
            name: None,
            delivery: None,
            batch_max: None,
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn an_entry_defaults_to_exactly_once_the_marked_types_and_the_topic_as_name() {
        let settings = entry().settings().expect("valid");
        assert_eq!(settings.name, "orders.integration");
        assert_eq!(settings.delivery, Delivery::ExactlyOnce);
        assert_eq!(settings.selection, Selection::Integration);
    }

    #[test]
    fn a_bad_entry_says_what_is_wrong() {
        let bad = PublishEntry { delivery: Some("twice".into()), ..entry() };
        let error = bad.settings().expect_err("refused").to_string();
        assert!(error.contains("\"twice\" is not one of"), "{error}");
        let bad = PublishEntry { name: Some("a/b".into()), ..entry() };
        assert!(bad.settings().expect_err("refused").to_string().contains("publisher name \"a/b\""));
    }
}
