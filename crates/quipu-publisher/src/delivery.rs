//! [`Delivery`]: how records go to the broker, and what a consumer of the
//! topic sees after a crash.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How the publisher produces. In every mode a restarted publisher first
/// reads what already landed in the topic (see [`crate::Landed`]), so it
/// neither skips nor repeats an event that a crash left between the broker
/// and the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A transactional producer: each batch is one Kafka transaction, and a
    /// crashed batch is aborted when the publisher restarts. Consumers that
    /// read with `isolation.level=read_committed` see each event exactly
    /// once. Needs a broker with transactions.
    ExactlyOnce,
    /// An idempotent producer without transactions: the broker drops a
    /// retried batch it already has, and a partition always holds a prefix
    /// of what was sent to it, so each event lands once. A crash may leave
    /// part of a batch visible before the rest follows. Needs a broker
    /// with idempotent producers (`InitProducerId`).
    Idempotent,
    /// A plain producer (one request in flight per broker, so order holds):
    /// a retry after a lost answer may write a record twice; consumers
    /// drop repeats by the `quipu-event-id` header. For brokers without
    /// idempotent producers.
    AtLeastOnce,
}

impl Delivery {
    /// The producer properties this mode sets; `transactional_id` names
    /// the publisher's transactions.
    #[must_use]
    pub fn producer_properties(self, transactional_id: &str) -> Vec<(&'static str, String)> {
        match self {
            Delivery::ExactlyOnce => {
                vec![("enable.idempotence", "true".into()), ("transactional.id", transactional_id.to_string())]
            }
            Delivery::Idempotent => vec![("enable.idempotence", "true".into())],
            Delivery::AtLeastOnce => {
                vec![("enable.idempotence", "false".into()), ("max.in.flight.requests.per.connection", "1".into())]
            }
        }
    }

    /// Whether consumers of the topic (and the publisher reading its tail)
    /// read committed transactions only.
    #[must_use]
    pub fn isolation_level(self) -> &'static str {
        match self {
            Delivery::ExactlyOnce => "read_committed",
            Delivery::Idempotent | Delivery::AtLeastOnce => "read_uncommitted",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::Idempotent => "idempotent",
            Delivery::AtLeastOnce => "at-least-once",
        })
    }
}

impl FromStr for Delivery {
    type Err = Error;

    fn from_str(text: &str) -> Result<Delivery, Error> {
        match text {
            "exactly-once" => Ok(Delivery::ExactlyOnce),
            "idempotent" => Ok(Delivery::Idempotent),
            "at-least-once" => Ok(Delivery::AtLeastOnce),
            other => {
                Err(Error::Invalid(format!("delivery {other:?} is not one of exactly-once, idempotent, at-least-once")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_reads_back_from_its_name() {
        for delivery in [Delivery::ExactlyOnce, Delivery::Idempotent, Delivery::AtLeastOnce] {
            assert_eq!(delivery.to_string().parse::<Delivery>().expect("its own name"), delivery);
        }
        let refused = "exactly_once".parse::<Delivery>().expect_err("not a mode");
        assert!(refused.to_string().contains("\"exactly_once\" is not one of"), "{refused}");
    }

    #[test]
    fn only_exactly_once_uses_transactions() {
        let transactional = |d: Delivery| d.producer_properties("t").iter().any(|(k, _)| *k == "transactional.id");
        assert!(transactional(Delivery::ExactlyOnce));
        assert!(!transactional(Delivery::Idempotent));
        assert!(!transactional(Delivery::AtLeastOnce));
        assert_eq!(Delivery::ExactlyOnce.isolation_level(), "read_committed");
    }
}
