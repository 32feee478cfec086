//! The publisher's errors. Each stops a run; what was published and
//! checkpointed before stays, and the next run resumes without loss or
//! duplicate.

/// Why a publisher could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is not valid; the message says which and why.
    #[error("invalid publisher setting: {0}")]
    Invalid(String),
    /// Quipu refused a call or could not be reached.
    #[error("quipu: {0}")]
    Quipu(#[from] quipu_client::Error),
    /// The broker refused a call or could not be reached.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The destination topic does not exist on the broker.
    #[error("kafka: topic {topic:?} does not exist on {brokers}: create it first (the publisher never creates topics)")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
    },
    /// The checkpoint was written by another publisher of the same name
    /// since this one read it: two publishers must not share a name.
    #[error(
        "publisher {name:?}: its checkpoint stream {stream:?} was moved by another publisher of the same name; \
         this one stops (run one publisher per name)"
    )]
    Fenced {
        /// The publisher's name.
        name: String,
        /// Its checkpoint stream.
        stream: String,
    },
    /// The checkpoint names another topic: a publisher's position only
    /// means something for the topic it published to.
    #[error(
        "publisher {name:?} publishes to topic {recorded:?}, not {asked:?}: \
         give the publisher for {asked:?} another name"
    )]
    TopicChanged {
        /// The publisher's name.
        name: String,
        /// The topic in its checkpoint.
        recorded: String,
        /// The topic asked for now.
        asked: String,
    },
    /// The checkpoint stream holds something that is not a checkpoint.
    #[error("publisher checkpoint in {stream:?} is not readable: {reason}")]
    Checkpoint {
        /// The checkpoint stream.
        stream: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A blocking call to the Kafka client did not return.
    #[error("kafka client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
