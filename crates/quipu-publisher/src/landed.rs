//! [`Landed`]: what of a publisher's output is already in its topic.
//!
//! The checkpoint in Quipu is written after the broker acknowledged a
//! batch, so a crash can leave events in the topic past the checkpoint.
//! A starting publisher reads the end of each partition (as its consumers
//! would: committed transactions only, in exactly-once mode) and finds the
//! last position it published there. Each partition holds a prefix of what
//! was sent to it (one producer, in order: idempotent sequence numbers or
//! one request in flight), so an event past the checkpoint is already in
//! the topic exactly when its position is at most its partition's last.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Error, record};

/// Records read back at first from the end of a partition; the window
/// grows eightfold while none of them is the publisher's.
const WINDOW_FIRST: i64 = 64;

/// The last position a publisher wrote to each partition of its topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Landed {
    last: HashMap<i32, u64>,
}

impl Landed {
    /// Reads the end of every partition of `topic` for the records of
    /// `publisher`. `config` carries the brokers and the client settings;
    /// `isolation` is the consumers' isolation level. Blocks the thread.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker cannot be read within `timeout`
    /// per step, [`Error::UnknownTopic`] when the topic does not exist.
    pub fn read(
        config: &ClientConfig,
        topic: &str,
        publisher: &str,
        isolation: &str,
        timeout: Duration,
    ) -> Result<Landed, Error> {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", format!("quipu-publisher-{publisher}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", isolation)
            .create()?;
        let brokers = config.get("bootstrap.servers").unwrap_or_default();
        let partitions = crate::publisher::partition_count(consumer.client(), brokers, topic, timeout)?;
        let mut ranges = Vec::new();
        for partition in 0..partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            if high > low {
                ranges.push((partition, low, high));
            }
        }
        let mut landed = Landed::default();
        let mut window = WINDOW_FIRST;
        while !ranges.is_empty() {
            let mut assignment = TopicPartitionList::new();
            for &(partition, low, high) in &ranges {
                assignment.add_partition_offset(topic, partition, Offset::Offset(low.max(high - window)))?;
            }
            consumer.assign(&assignment)?;
            landed.read_to_end(&consumer, ranges.iter().map(|r| r.0).collect(), publisher, timeout)?;
            ranges.retain(|&(partition, low, high)| !landed.last.contains_key(&partition) && high - window > low);
            window = window.saturating_mul(8);
        }
        Ok(landed)
    }

    /// Consumes the assigned partitions to their ends, keeping the last
    /// position of `publisher` in each.
    fn read_to_end(
        &mut self,
        consumer: &BaseConsumer,
        mut open: HashSet<i32>,
        publisher: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut deadline = Instant::now() + timeout;
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(Error::Kafka(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::OperationTimedOut)));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(message)) => {
                    deadline = Instant::now() + timeout;
                    if let Some(position) = record::published_position(&message, publisher) {
                        self.last.insert(rdkafka::Message::partition(&message), position);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the event at `position`, sent to `partition`, is in the
    /// topic.
    #[must_use]
    pub fn contains(&self, partition: i32, position: u64) -> bool {
        self.last.get(&partition).is_some_and(|&last| position <= last)
    }

    /// The last position published to any partition: past it, nothing of
    /// this publisher is in the topic.
    #[must_use]
    pub fn last(&self) -> Option<u64> {
        self.last.values().copied().max()
    }

    /// The same, with `position` as the last one published to
    /// `partition`.
    #[must_use]
    pub fn with(mut self, partition: i32, position: u64) -> Landed {
        self.last.insert(partition, position);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_landed_when_its_partition_got_at_least_its_position() {
        let landed = Landed::default().with(0, 10).with(2, 7);
        assert!(landed.contains(0, 10) && landed.contains(0, 3) && landed.contains(2, 7));
        assert!(!landed.contains(0, 11), "past the partition's last");
        assert!(!landed.contains(2, 9), "another partition's last does not count");
        assert!(!landed.contains(1, 0), "nothing landed in partition 1");
        assert_eq!(landed.last(), Some(10));
        assert_eq!(Landed::default().last(), None);
    }
}
