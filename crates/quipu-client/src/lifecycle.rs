//! Stream lifecycle: metadata (max count, max age, truncate before,
//! custom JSON), soft delete and tombstone, and the online scavenge that
//! removes hidden events from the log.

use quipu_proto::v1 as pb;

use crate::Error;
use crate::client::Client;
use crate::event::Revision;

/// A stream's metadata; reads of the stream return only visible events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    /// Only the last this many events are visible.
    pub max_count: Option<u64>,
    /// Only events committed within this many seconds are visible.
    pub max_age_s: Option<u64>,
    /// Events before this revision are not visible.
    pub truncate_before: Option<Revision>,
    /// Anything the application keeps with the stream.
    pub custom: Option<serde_json::Value>,
    /// Deleted for good.
    pub tombstoned: bool,
}

fn metadata(m: pb::StreamMetadata) -> StreamMetadata {
    StreamMetadata {
        max_count: m.max_count,
        max_age_s: m.max_age_s,
        truncate_before: m.truncate_before.map(Revision),
        custom: serde_json::from_str(&m.custom_json).ok(),
        tombstoned: m.tombstoned,
    }
}

impl Client {
    /// A stream's metadata (the default when none was set).
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn stream_metadata(&self, stream: &str) -> Result<StreamMetadata, Error> {
        let request = pb::StreamInfoRequest { stream: stream.to_string() };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.get_stream_metadata(request).await }
            })
            .await?;
        Ok(metadata(response))
    }

    /// Replaces a stream's metadata.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or `max_count` 0;
    /// [`Error::NotFound`] for a tombstoned stream.
    pub async fn set_stream_metadata(&self, stream: &str, set: &StreamMetadata) -> Result<StreamMetadata, Error> {
        let request = pb::SetStreamMetadataRequest {
            stream: stream.to_string(),
            metadata: Some(pb::StreamMetadata {
                max_count: set.max_count,
                max_age_s: set.max_age_s,
                truncate_before: set.truncate_before.map(|revision| revision.0),
                custom_json: set.custom.as_ref().map(ToString::to_string).unwrap_or_default(),
                tombstoned: set.tombstoned,
            }),
        };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.set_stream_metadata(request).await }
            })
            .await?;
        Ok(metadata(response))
    }

    /// Deletes a stream: softly (it reads as not found until new events
    /// are appended), or for good with `tombstone`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a stream without events or already
    /// tombstoned.
    pub async fn delete_stream(&self, stream: &str, tombstone: bool) -> Result<StreamMetadata, Error> {
        let request = pb::DeleteStreamRequest { stream: stream.to_string(), tombstone };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.delete_stream(request).await }
            })
            .await?;
        Ok(metadata(response))
    }
}

/// Where a scavenge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScavengeState {
    /// Going through the segments.
    Running,
    /// Went through every closed segment.
    Done,
    /// Stopped on request; what is done stays done.
    Stopped,
    /// Ended with an error (see the message); what is done stays done.
    Failed,
}

/// A scavenge's state and progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ScavengeStatus {
    /// When it started, µs since the Unix epoch; names the scavenge.
    pub started_at_us: u64,
    /// When it ended; `None` while it runs.
    pub finished_at_us: Option<u64>,
    /// Where it is.
    pub state: ScavengeState,
    /// Streams whose events it may remove.
    pub streams: u64,
    /// Closed segments it covers.
    pub segments_total: u32,
    /// Segments done.
    pub segments_done: u32,
    /// Segments rewritten.
    pub segments_rewritten: u32,
    /// Bytes of the segments it covers.
    pub bytes_total: u64,
    /// Bytes read so far.
    pub bytes_scanned: u64,
    /// Disk freed so far.
    pub bytes_reclaimed: u64,
    /// Events removed so far.
    pub events_removed: u64,
    /// Bytes read per second since the start.
    pub bytes_per_second: f64,
    /// Why it failed; empty otherwise.
    pub message: String,
}

fn scavenge_status(s: pb::ScavengeStatus) -> Result<ScavengeStatus, Error> {
    let state = match s.state() {
        pb::ScavengeState::Running => ScavengeState::Running,
        pb::ScavengeState::Done => ScavengeState::Done,
        pb::ScavengeState::Stopped => ScavengeState::Stopped,
        pb::ScavengeState::Failed => ScavengeState::Failed,
        pb::ScavengeState::Unspecified => return Err(Error::Protocol("a scavenge status without a state".into())),
    };
    Ok(ScavengeStatus {
        started_at_us: s.started_at_us,
        finished_at_us: s.finished_at_us,
        state,
        streams: s.streams,
        segments_total: s.segments_total,
        segments_done: s.segments_done,
        segments_rewritten: s.segments_rewritten,
        bytes_total: s.bytes_total,
        bytes_scanned: s.bytes_scanned,
        bytes_reclaimed: s.bytes_reclaimed,
        events_removed: s.events_removed,
        bytes_per_second: s.bytes_per_second,
        message: s.message,
    })
}

impl Client {
    /// Starts an online scavenge: the server removes from its closed log
    /// segments every event stream metadata hides, while appends and
    /// reads go on. Answers at once; follow it with
    /// [`Client::scavenge_status`].
    ///
    /// # Errors
    /// [`Error::Server`] with `FAILED_PRECONDITION` when one runs.
    pub async fn start_scavenge(&self) -> Result<ScavengeStatus, Error> {
        scavenge_status(self.call(|mut grpc| async move { grpc.start_scavenge(pb::Empty {}).await }).await?)
    }

    /// The running or last scavenge.
    ///
    /// # Errors
    /// [`Error::NotFound`] when none ran since the server started.
    pub async fn scavenge_status(&self) -> Result<ScavengeStatus, Error> {
        scavenge_status(self.call(|mut grpc| async move { grpc.get_scavenge(pb::Empty {}).await }).await?)
    }

    /// Stops the running scavenge after the segment in hand.
    ///
    /// # Errors
    /// [`Error::Server`] with `FAILED_PRECONDITION` when none runs,
    /// [`Error::NotFound`] when none ran.
    pub async fn stop_scavenge(&self) -> Result<ScavengeStatus, Error> {
        scavenge_status(self.call(|mut grpc| async move { grpc.stop_scavenge(pb::Empty {}).await }).await?)
    }
}
