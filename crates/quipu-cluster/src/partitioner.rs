//! Which partition of the cluster topic a proposal goes to.
//!
//! A proposal is one Kafka record, so it lands in one partition, and an
//! atomic append may only write streams that share one. By default each
//! stream is its own partition key; related streams can share a key by
//! their category or by the text before a separator (a tenant, an
//! aggregate root), so that they can be written together. The partition
//! of a key is Kafka's default partitioner's, so any Kafka tool agrees on
//! where a key goes.

use std::fmt;
use std::str::FromStr;

use quipu_core::{AppendRequest, StreamName};

/// What part of a stream's name picks its partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PartitionKey {
    /// The whole name: every stream on its own (the default).
    #[default]
    Stream,
    /// The category (the name before its first `-`): `order-1` and
    /// `order-2` share a partition.
    Category,
    /// The name before the first occurrence of this separator (the whole
    /// name when it has none): with `/`, `acme/order-1` and
    /// `acme/invoice-9` share a partition.
    Prefix(char),
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKey::Stream => f.write_str("stream"),
            PartitionKey::Category => f.write_str("category"),
            PartitionKey::Prefix(separator) => write!(f, "prefix:{separator}"),
        }
    }
}

/// Text that names no partition key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown partition key {text:?}; use stream, category or prefix:<one character>")]
pub struct PartitionKeyError {
    /// The text, as given.
    pub text: String,
}

impl FromStr for PartitionKey {
    type Err = PartitionKeyError;

    /// `stream`, `category` or `prefix:` and one character, as
    /// [`PartitionKey`]'s `Display` writes them.
    fn from_str(text: &str) -> Result<PartitionKey, PartitionKeyError> {
        let error = || PartitionKeyError { text: text.to_owned() };
        match text {
            "stream" => Ok(PartitionKey::Stream),
            "category" => Ok(PartitionKey::Category),
            _ => {
                let separator = text.strip_prefix("prefix:").ok_or_else(error)?;
                let mut chars = separator.chars();
                match (chars.next(), chars.next()) {
                    (Some(separator), None) => Ok(PartitionKey::Prefix(separator)),
                    _ => Err(error()),
                }
            }
        }
    }
}

/// A request the cluster cannot take as one proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// The streams of an atomic append fall in different partitions.
    #[error(
        "in cluster mode an atomic append writes streams of one partition: {first} is in partition \
         {first_partition} and {other} in partition {other_partition} (partition key: {key}); \
         choose --cluster-partition-key so that streams written together share a key"
    )]
    SpansPartitions {
        /// The request's first stream.
        first: String,
        /// Its partition.
        first_partition: u32,
        /// A stream in another partition.
        other: String,
        /// That one's partition.
        other_partition: u32,
        /// The partition key in use.
        key: PartitionKey,
    },
    /// The request writes no stream.
    #[error("the append writes no stream")]
    NoStreams,
}

/// Maps streams to the partitions of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioner {
    key: PartitionKey,
    partitions: u32,
}

impl Partitioner {
    /// A partitioner over `partitions` partitions.
    ///
    /// # Panics
    /// When `partitions` is 0 or above `i32::MAX` (Kafka's own limit).
    #[must_use]
    pub fn new(key: PartitionKey, partitions: u32) -> Partitioner {
        assert!(partitions > 0 && i32::try_from(partitions).is_ok(), "a topic has 1 to 2^31-1 partitions");
        Partitioner { key, partitions }
    }

    /// The part of `stream`'s name that picks its partition (the Kafka
    /// record's key).
    #[must_use]
    pub fn key_of<'a>(&self, stream: &'a StreamName) -> &'a str {
        let name = stream.as_str();
        match self.key {
            PartitionKey::Stream => name,
            PartitionKey::Category => stream.category(),
            PartitionKey::Prefix(separator) => name.split_once(separator).map_or(name, |(prefix, _)| prefix),
        }
    }

    /// The partition of `stream`.
    #[must_use]
    pub fn partition_of(&self, stream: &StreamName) -> u32 {
        let partitions = i32::try_from(self.partitions).unwrap_or(i32::MAX);
        let partition = quipu_types::topic::partition_of(self.key_of(stream).as_bytes(), partitions);
        u32::try_from(partition).unwrap_or(0)
    }

    /// The one partition every stream of `request` falls in.
    ///
    /// # Errors
    /// [`PartitionError::SpansPartitions`] naming two streams in different
    /// partitions; [`PartitionError::NoStreams`].
    pub fn partition_of_request(&self, request: &AppendRequest) -> Result<u32, PartitionError> {
        let first = request.writes.first().ok_or(PartitionError::NoStreams)?;
        let partition = self.partition_of(&first.stream);
        for write in request.writes.iter().skip(1) {
            let other = self.partition_of(&write.stream);
            if other != partition {
                return Err(PartitionError::SpansPartitions {
                    first: first.stream.as_str().to_owned(),
                    first_partition: partition,
                    other: write.stream.as_str().to_owned(),
                    other_partition: other,
                    key: self.key.clone(),
                });
            }
        }
        Ok(partition)
    }
}

#[cfg(test)]
mod tests {
    use quipu_core::{ExpectedRevision, StreamWrite};

    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).expect("a stream name")
    }

    fn request(streams: &[&str]) -> AppendRequest {
        AppendRequest {
            writes: streams
                .iter()
                .map(|s| StreamWrite { stream: stream(s), expected: ExpectedRevision::Any, events: Vec::new() })
                .collect(),
            condition: None,
        }
    }

    #[test]
    fn keys_are_the_name_its_category_or_its_prefix() {
        let name = stream("acme/order-1");
        assert_eq!(Partitioner::new(PartitionKey::Stream, 8).key_of(&name), "acme/order-1");
        assert_eq!(Partitioner::new(PartitionKey::Category, 8).key_of(&name), "acme/order");
        assert_eq!(Partitioner::new(PartitionKey::Prefix('/'), 8).key_of(&name), "acme");
        assert_eq!(Partitioner::new(PartitionKey::Prefix(':'), 8).key_of(&name), "acme/order-1");
    }

    #[test]
    fn a_key_goes_where_kafka_s_default_partitioner_sends_it() {
        let partitioner = Partitioner::new(PartitionKey::Stream, 12);
        for name in ["order-1", "order-2", "customer-77"] {
            let kafka = quipu_types::topic::partition_of(name.as_bytes(), 12);
            assert_eq!(i64::from(partitioner.partition_of(&stream(name))), i64::from(kafka));
        }
        assert_eq!(Partitioner::new(PartitionKey::Stream, 1).partition_of(&stream("anything")), 0);
    }

    #[test]
    fn an_append_across_partitions_is_refused_naming_both() {
        let by_stream = Partitioner::new(PartitionKey::Stream, 64);
        let names: Vec<String> = (0..64).map(|n| format!("order-{n}")).collect();
        let first = names.first().expect("names");
        let other = names
            .iter()
            .find(|n| by_stream.partition_of(&stream(n)) != by_stream.partition_of(&stream(first)))
            .expect("64 streams over 64 partitions do not all share one");
        let error = by_stream.partition_of_request(&request(&[first, other])).expect_err("two partitions");
        let text = error.to_string();
        assert!(
            text.contains(first.as_str()) && text.contains(other.as_str()) && text.contains("--cluster-partition-key")
        );
        let by_category = Partitioner::new(PartitionKey::Category, 64);
        let partition = by_category.partition_of_request(&request(&[first, other])).expect("one category");
        assert_eq!(partition, by_category.partition_of(&stream(first)));
        assert_eq!(by_category.partition_of_request(&request(&[])), Err(PartitionError::NoStreams));
    }

    #[test]
    fn partition_keys_read_back_as_written_and_bad_ones_say_what_works() {
        for key in [PartitionKey::Stream, PartitionKey::Category, PartitionKey::Prefix('/')] {
            assert_eq!(key.to_string().parse::<PartitionKey>(), Ok(key));
        }
        for bad in ["", "tenant", "prefix:", "prefix:ab"] {
            let error = bad.parse::<PartitionKey>().expect_err("not a key");
            assert!(error.to_string().contains("prefix:<one character>"), "{error}");
        }
    }
}
