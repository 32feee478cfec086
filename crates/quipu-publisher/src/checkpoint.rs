//! [`CheckpointStream`]: where a publisher stands, kept in Quipu.
//!
//! A publisher named `N` keeps its checkpoint in the stream
//! `publisher-N`, one [`CHECKPOINT_TYPE`] event per checkpoint (the
//! stream keeps the last [`KEPT`]). Each append expects the revision the
//! publisher last read or wrote, so a second publisher of the same name
//! is refused at its next checkpoint instead of publishing twice.

use quipu_client::{Client, Direction, Error as ClientError, ExpectedRevision, NewEvent, Revision, StreamMetadata};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Event type of a checkpoint.
pub const CHECKPOINT_TYPE: &str = "PublisherCheckpoint";

/// Checkpoints a checkpoint stream keeps visible.
pub const KEPT: u64 = 16;

/// Where a publisher stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The topic it publishes to.
    pub topic: String,
    /// Every selected event before this position of `$all` is in the
    /// topic.
    pub next_position: u64,
    /// Partitions of the topic when the events were sent: the partition
    /// of a stream is `murmur2(stream) % partitions`.
    pub partitions: i32,
}

/// A publisher's checkpoint stream, with the revision last read or written.
#[derive(Debug)]
pub struct CheckpointStream {
    client: Client,
    name: String,
    stream: String,
    revision: Option<Revision>,
}

impl CheckpointStream {
    /// The stream holding the checkpoints of publisher `name`.
    #[must_use]
    pub fn stream_of(name: &str) -> String {
        format!("publisher-{name}")
    }

    /// Reads the last checkpoint of publisher `name`; `None` before its
    /// first.
    ///
    /// # Errors
    /// [`Error::Quipu`] when Quipu cannot be read, [`Error::Checkpoint`]
    /// when the stream holds something else.
    pub async fn load(client: Client, name: &str) -> Result<(CheckpointStream, Option<Checkpoint>), Error> {
        let stream = CheckpointStream::stream_of(name);
        let last = match client.read_stream(&stream, None, Direction::Backwards, 1).await {
            Ok(events) => events.into_iter().next(),
            Err(ClientError::NotFound(_)) => None,
            Err(other) => return Err(other.into()),
        };
        let checkpoint = match &last {
            Some(event) if event.event_type == CHECKPOINT_TYPE => Some(
                event
                    .json::<Checkpoint>()
                    .map_err(|e| Error::Checkpoint { stream: stream.clone(), reason: e.to_string() })?,
            ),
            Some(event) => {
                return Err(Error::Checkpoint {
                    stream,
                    reason: format!("its last event has type {:?}, not {CHECKPOINT_TYPE}", event.event_type),
                });
            }
            None => None,
        };
        let revision = last.map(|event| event.revision);
        Ok((CheckpointStream { client, name: name.to_string(), stream, revision }, checkpoint))
    }

    /// Name of the stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `checkpoint`, expecting the stream as this publisher last
    /// saw it.
    ///
    /// # Errors
    /// [`Error::Fenced`] when another publisher wrote in between;
    /// [`Error::Quipu`] when Quipu refused or could not be reached.
    pub async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let event = NewEvent::json(CHECKPOINT_TYPE, checkpoint).map_err(Error::Quipu)?;
        let expected = ExpectedRevision::from_last(self.revision);
        let written = match self.client.append(&self.stream, expected, vec![event]).await {
            Ok(written) => written,
            Err(ClientError::Conflict { .. }) => {
                return Err(Error::Fenced { name: self.name.clone(), stream: self.stream.clone() });
            }
            Err(other) => return Err(other.into()),
        };
        if self.revision.is_none() {
            let keep = StreamMetadata { max_count: Some(KEPT), ..StreamMetadata::default() };
            self.client.set_stream_metadata(&self.stream, &keep).await?;
        }
        self.revision = written.next_expected_revision();
        Ok(())
    }
}
