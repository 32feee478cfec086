//! Decoding a request, choosing its handler, encoding the answer; and the
//! versions this door offers (ApiVersions).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest, ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, decode_request_header_from_buffer};

use crate::{Door, groups};

/// The APIs this door answers, with the versions it offers.
const OFFERED: [(ApiKey, i16, i16); 12] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
];

/// A request that closes the connection instead of getting an answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Too short for a request header.
    #[error("a request frame of {0} bytes is shorter than a request header")]
    Short(usize),
    /// An API key Kafka does not have, or one this door does not offer.
    #[error("API key {key} version {version} is not offered by this door")]
    NotOffered {
        /// The API key.
        key: i16,
        /// The version asked for.
        version: i16,
    },
    /// The request does not decode.
    #[error("request does not decode: {0}")]
    Decode(String),
    /// The answer does not encode (a bug).
    #[error("answer does not encode: {0}")]
    Encode(String),
}

/// The versions of `key` this door offers.
fn offered(key: ApiKey) -> Option<(i16, i16)> {
    OFFERED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

/// Answers one request frame (without its length prefix): the answer's
/// bytes (header and body, without the length prefix); `None` for a
/// produce with `acks = 0`, which gets no answer.
///
/// # Errors
/// [`ApiError`] when the connection must close.
pub async fn answer(door: &Arc<Door>, local: SocketAddr, mut frame: Bytes) -> Result<Option<BytesMut>, ApiError> {
    if frame.len() < 8 {
        return Err(ApiError::Short(frame.len()));
    }
    let (key, version) = (frame.slice(0..2).get_i16(), frame.slice(2..4).get_i16());
    let correlation_id = frame.slice(4..8).get_i32();
    let api_key = ApiKey::try_from(key).map_err(|()| ApiError::NotOffered { key, version })?;
    let Some((min, max)) = offered(api_key) else {
        return Err(ApiError::NotOffered { key, version });
    };
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            // Kafka answers an ApiVersions it cannot read with version 0,
            // so the client learns what to ask for.
            let body = api_versions().with_error_code(ResponseError::UnsupportedVersion.code());
            return encode(ApiKey::ApiVersions, 0, correlation_id, &body).map(Some);
        }
        return Err(ApiError::NotOffered { key, version });
    }
    let header = decode_request_header_from_buffer(&mut frame).map_err(|e| ApiError::Decode(e.to_string()))?;
    let client_id = header.client_id.as_ref().map(ToString::to_string).unwrap_or_default();
    if api_key == ApiKey::Produce {
        let request = decode::<ProduceRequest>(&mut frame, version)?;
        let response = crate::produce::answer(door, &request).await;
        if request.acks == 0 {
            return Ok(None);
        }
        return encode(api_key, version, correlation_id, &response).map(Some);
    }
    let answer = match api_key {
        ApiKey::ApiVersions => {
            decode::<ApiVersionsRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &api_versions())
        }
        ApiKey::Metadata => {
            let request = decode::<MetadataRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &crate::metadata::answer(door, local, &request))
        }
        ApiKey::ListOffsets => {
            let request = decode::<ListOffsetsRequest>(&mut frame, version)?;
            let response = crate::offsets::answer(door, &request).await;
            encode(api_key, version, correlation_id, &response)
        }
        ApiKey::Fetch => {
            let request = decode::<FetchRequest>(&mut frame, version)?;
            let response = crate::fetch::answer(door, request).await;
            encode(api_key, version, correlation_id, &response)
        }
        ApiKey::FindCoordinator => {
            let request = decode::<FindCoordinatorRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::find_coordinator(local, &request))
        }
        ApiKey::JoinGroup => {
            let request = decode::<JoinGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::join(door, &client_id, &request).await)
        }
        ApiKey::SyncGroup => {
            let request = decode::<SyncGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::sync(door, &request).await)
        }
        ApiKey::Heartbeat => {
            let request = decode::<HeartbeatRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::heartbeat(door, &request).await)
        }
        ApiKey::LeaveGroup => {
            let request = decode::<LeaveGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::leave(door, &request).await)
        }
        ApiKey::OffsetCommit => {
            let request = decode::<OffsetCommitRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::commit(door, &request).await)
        }
        ApiKey::OffsetFetch => {
            let request = decode::<OffsetFetchRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::fetch_offsets(door, &request))
        }
        _ => Err(ApiError::NotOffered { key, version }),
    };
    answer.map(Some)
}

fn decode<T: Decodable>(frame: &mut Bytes, version: i16) -> Result<T, ApiError> {
    T::decode(frame, version).map_err(|e| ApiError::Decode(e.to_string()))
}

fn encode<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Result<BytesMut, ApiError> {
    let mut buffer = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buffer, key.response_header_version(version)).map_err(|e| ApiError::Encode(e.to_string()))?;
    body.encode(&mut buffer, version).map_err(|e| ApiError::Encode(e.to_string()))?;
    Ok(buffer)
}

/// The ApiVersions answer: every offered API and its versions.
fn api_versions() -> ApiVersionsResponse {
    let api_keys = OFFERED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Message;

    use super::*;

    #[test]
    fn offered_versions_are_versions_the_codec_has() {
        let within = |range: kafka_protocol::protocol::VersionRange, min: i16, max: i16| {
            range.min <= min && max <= range.max && min <= max
        };
        for (key, min, max) in OFFERED {
            let range = match key {
                ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
                ApiKey::Metadata => MetadataRequest::VERSIONS,
                ApiKey::Fetch => FetchRequest::VERSIONS,
                ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
                ApiKey::Produce => ProduceRequest::VERSIONS,
                ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
                ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
                ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
                ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
                ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
                ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
                ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
                _ => panic!("no codec range for {key:?}"),
            };
            assert!(within(range, min, max), "{key:?} {min}..={max} outside {range:?}");
        }
    }
}
