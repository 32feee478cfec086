//! Stream lifecycle: metadata (max count, max age, truncate before,
//! custom JSON), soft delete and tombstone.

use quipu_proto::v1 as pb;

use crate::Error;
use crate::client::Client;

/// A stream's metadata; reads of the stream return only visible events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    /// Only the last this many events are visible.
    pub max_count: Option<u64>,
    /// Only events committed within this many seconds are visible.
    pub max_age_s: Option<u64>,
    /// Events before this revision are not visible.
    pub truncate_before: Option<u64>,
    /// Anything the application keeps with the stream.
    pub custom: Option<serde_json::Value>,
    /// Deleted for good.
    pub tombstoned: bool,
}

fn metadata(m: pb::StreamMetadata) -> StreamMetadata {
    StreamMetadata {
        max_count: m.max_count,
        max_age_s: m.max_age_s,
        truncate_before: m.truncate_before,
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
                truncate_before: set.truncate_before,
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
