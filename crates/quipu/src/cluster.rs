//! `quipu cluster`: commands about a cluster's Kafka topic, run against
//! its brokers (no Quipu server needed).

use anyhow::Context;

/// `quipu cluster ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Create the topic a cluster's nodes share, with the settings a node
    /// requires (kept forever, no compaction, no unclean leader election,
    /// room for the largest append); a node never creates it.
    CreateTopic {
        /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT].
        #[arg(long, env = "QUIPU_CLUSTER_BROKERS")]
        brokers: String,
        /// The topic's name.
        #[arg(long, env = "QUIPU_CLUSTER_TOPIC")]
        topic: String,
        /// Partitions: appends to streams of different partitions are
        /// ordered apart; more partitions spread a large cluster's load
        /// but add a tick round to each append's latency.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Replicas of each partition (3 for a production cluster, with
        /// min.insync.replicas=2 set for you).
        #[arg(long, default_value_t = 3)]
        replication_factor: i32,
    },
}

/// Runs a cluster command.
///
/// # Errors
/// Bad arguments; the broker's refusal.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::CreateTopic { brokers, topic, partitions, replication_factor } => {
            anyhow::ensure!(partitions >= 1, "--partitions must be at least 1");
            anyhow::ensure!(replication_factor >= 1, "--replication-factor must be at least 1");
            let record_bytes_max = u64::try_from(quipu_core::Options::default().record_bytes_bound())
                .context("the largest append's size")?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime
                .block_on(quipu_cluster::create_topic(
                    &brokers,
                    &topic,
                    partitions,
                    replication_factor,
                    record_bytes_max,
                ))
                .with_context(|| format!("creating topic {topic} on {brokers}"))?;
            println!(
                "created topic {topic}: {partitions} partitions, {replication_factor} replicas each, kept forever"
            );
            Ok(())
        }
    }
}
