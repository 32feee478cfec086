//! [`ClusterMode`]: how the nodes of a cluster put appends in the topic
//! (see `docs/cluster.md`, "Two modes").

use std::fmt;
use std::str::FromStr;

/// How appends reach the shared topic. Every node of one topic must run
/// the same mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// Any node produces any append as a proposal; every node decides it
    /// as it applies the topic, so the topic also holds the requests that
    /// were refused. Needs only an idempotent producer.
    #[default]
    LogOrder,
    /// One writer per partition at a time, fenced by a Kafka transactional
    /// id: the node that takes an append becomes its partition's writer
    /// (fencing the one before), catches up, checks the append against
    /// its store, and produces only what it accepts, in a transaction.
    /// The topic, read committed, holds accepted appends only.
    FencedWriter,
}

impl fmt::Display for ClusterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterMode::LogOrder => "log-order",
            ClusterMode::FencedWriter => "fenced-writer",
        })
    }
}

/// A cluster mode's name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cluster mode {text:?}: expected log-order or fenced-writer")]
pub struct ClusterModeError {
    /// What was given.
    pub text: String,
}

impl FromStr for ClusterMode {
    type Err = ClusterModeError;

    /// `log-order` or `fenced-writer`, as `Display` writes them.
    fn from_str(text: &str) -> Result<ClusterMode, ClusterModeError> {
        match text {
            "log-order" => Ok(ClusterMode::LogOrder),
            "fenced-writer" => Ok(ClusterMode::FencedWriter),
            _ => Err(ClusterModeError { text: text.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_back_as_they_are_written_and_others_are_refused_by_name() {
        for mode in [ClusterMode::LogOrder, ClusterMode::FencedWriter] {
            assert_eq!(mode.to_string().parse::<ClusterMode>(), Ok(mode));
        }
        let error = "fenced".parse::<ClusterMode>().expect_err("not a mode");
        assert!(error.to_string().contains("\"fenced\""), "{error}");
        assert_eq!(ClusterMode::default(), ClusterMode::LogOrder);
    }
}
