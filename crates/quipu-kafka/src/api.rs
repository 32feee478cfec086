//! Decoding a request, choosing its handler, encoding the answer; and the
//! versions this door offers (ApiVersions).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, DescribeConfigsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, ResponseHeader,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, decode_request_header_from_buffer};

use crate::{Door, groups};

/// The APIs this door answers, with the versions it offers.
const OFFERED: [(ApiKey, i16, i16); 15] = [
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
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DescribeConfigs, 1, 4),
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
        let response = crate::produce::answer(door, &request, version).await;
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
            encode(api_key, version, correlation_id, &crate::metadata::answer(door, local, &request, version))
        }
        ApiKey::ListOffsets => {
            let request = decode::<ListOffsetsRequest>(&mut frame, version)?;
            let response = crate::offsets::answer(door, &request).await;
            encode(api_key, version, correlation_id, &response)
        }
        ApiKey::Fetch => {
            let request = decode::<FetchRequest>(&mut frame, version)?;
            let response = crate::fetch::answer(door, request, version).await;
            encode(api_key, version, correlation_id, &response)
        }
        ApiKey::CreateTopics => {
            let request = decode::<CreateTopicsRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &crate::admin::create_topics(door, &request))
        }
        ApiKey::DescribeConfigs => {
            let request = decode::<DescribeConfigsRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &crate::admin::describe_configs(door, &request))
        }
        ApiKey::InitProducerId => {
            let request = decode::<InitProducerIdRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &crate::produce::init_producer_id(door, &request))
        }
        ApiKey::FindCoordinator => {
            let request = decode::<FindCoordinatorRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::find_coordinator(local, &request, version))
        }
        ApiKey::JoinGroup => {
            let request = decode::<JoinGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::join(door, &client_id, &request, version).await)
        }
        ApiKey::SyncGroup => {
            let request = decode::<SyncGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::sync(door, &request, version).await)
        }
        ApiKey::Heartbeat => {
            let request = decode::<HeartbeatRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::heartbeat(door, &request).await)
        }
        ApiKey::LeaveGroup => {
            let request = decode::<LeaveGroupRequest>(&mut frame, version)?;
            encode(api_key, version, correlation_id, &groups::leave(door, &request, version).await)
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Message, StrBytes, encode_request_header_into_buffer};
    use quipu_core::{Options, Store};

    use super::*;
    use crate::DoorConfig;

    fn name(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    fn topic(text: &str) -> TopicName {
        TopicName(name(text))
    }

    /// A request of `key` with some content, for `version`.
    fn request(key: ApiKey, version: i16) -> Vec<u8> {
        let group = GroupId(name(&format!("g-{version}")));
        let mut body = BytesMut::new();
        let encoded = match key {
            ApiKey::ApiVersions => ApiVersionsRequest::default().encode(&mut body, version),
            ApiKey::Metadata => {
                let topics = ["quipu.all", "order", "bad.name"]
                    .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(topic(t))));
                MetadataRequest::default().with_topics(Some(topics.to_vec())).encode(&mut body, version)
            }
            ApiKey::Fetch => {
                let partition = fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20);
                let fetch = fetch_request::FetchTopic::default()
                    .with_topic(topic("quipu.all"))
                    .with_partitions(vec![partition]);
                FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![fetch]).encode(&mut body, version)
            }
            ApiKey::ListOffsets => {
                let partition = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
                let wanted = list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("order"))
                    .with_partitions(vec![partition]);
                ListOffsetsRequest::default().with_topics(vec![wanted]).encode(&mut body, version)
            }
            ApiKey::Produce => {
                let mut headers = indexmap::IndexMap::new();
                headers.insert(name("quipu-event-type"), Some(Bytes::from_static(b"Placed")));
                let record = kafka_protocol::records::Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: kafka_protocol::records::TimestampType::Creation,
                    offset: 0,
                    sequence: -1,
                    timestamp: 0,
                    key: Some(Bytes::from(format!("order-{version}"))),
                    value: Some(Bytes::from_static(b"{}")),
                    headers,
                };
                let records = crate::record::batch(&[record], 0, 0).unwrap();
                let partition = produce_request::PartitionProduceData::default().with_records(Some(records));
                let data = produce_request::TopicProduceData::default()
                    .with_name(topic("order"))
                    .with_partition_data(vec![partition]);
                ProduceRequest::default().with_acks(1).with_topic_data(vec![data]).encode(&mut body, version)
            }
            ApiKey::FindCoordinator => FindCoordinatorRequest::default().with_key(name("g")).encode(&mut body, version),
            ApiKey::InitProducerId => {
                InitProducerIdRequest::default().with_transaction_timeout_ms(1000).encode(&mut body, version)
            }
            ApiKey::CreateTopics => {
                let topics =
                    ["order", "bad.name"].map(|t| create_topics_request::CreatableTopic::default().with_name(topic(t)));
                CreateTopicsRequest::default().with_topics(topics.to_vec()).encode(&mut body, version)
            }
            ApiKey::DescribeConfigs => {
                let resources = [(2, "order"), (2, "bad.name"), (4, "0"), (3, "x")].map(|(kind, resource)| {
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(name(resource))
                });
                DescribeConfigsRequest::default().with_resources(resources.to_vec()).encode(&mut body, version)
            }
            ApiKey::JoinGroup => {
                let protocol = join_group_request::JoinGroupRequestProtocol::default().with_name(name("range"));
                JoinGroupRequest::default()
                    .with_group_id(group)
                    .with_session_timeout_ms(10_000)
                    .with_protocol_type(name("consumer"))
                    .with_protocols(vec![protocol])
                    .encode(&mut body, version)
            }
            ApiKey::SyncGroup => {
                SyncGroupRequest::default().with_group_id(group).with_member_id(name("m")).encode(&mut body, version)
            }
            ApiKey::Heartbeat => {
                HeartbeatRequest::default().with_group_id(group).with_member_id(name("m")).encode(&mut body, version)
            }
            ApiKey::LeaveGroup => {
                let request = LeaveGroupRequest::default().with_group_id(group);
                let request = if version >= 3 {
                    request.with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(name("m"))])
                } else {
                    request.with_member_id(name("m"))
                };
                request.encode(&mut body, version)
            }
            ApiKey::OffsetCommit => {
                let partition = offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(5);
                let committed = offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("order"))
                    .with_partitions(vec![partition]);
                OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![committed])
                    .encode(&mut body, version)
            }
            ApiKey::OffsetFetch => {
                let wanted = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("order"))
                    .with_partition_indexes(vec![0]);
                OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![wanted]))
                    .encode(&mut body, version)
            }
            other => panic!("no request for {other:?}"),
        };
        encoded.unwrap_or_else(|e| panic!("{key:?} v{version} request: {e}"));
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(name("test")));
        let mut frame = BytesMut::new();
        encode_request_header_into_buffer(&mut frame, &header).unwrap();
        frame.extend_from_slice(&body);
        frame.to_vec()
    }

    fn decodes<T: Decodable>(key: ApiKey, version: i16, mut answer: Bytes) {
        let header = ResponseHeader::decode(&mut answer, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 7);
        T::decode(&mut answer, version).unwrap_or_else(|e| panic!("{key:?} v{version} answer: {e}"));
    }

    #[tokio::test]
    async fn every_offered_version_of_every_api_is_answered_in_that_version() {
        let dir = tempfile::tempdir().unwrap();
        let node = quipu_node::Node::open(Store::open(dir.path(), Options::default()).unwrap()).unwrap();
        let door = Arc::new(Door::new(&node, DoorConfig::default()).unwrap());
        let local: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        for (key, min, max) in OFFERED {
            for version in min..=max {
                let frame = Bytes::from(request(key, version));
                let answer = answer(&door, local, frame).await.unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                let answer = answer.expect("acks 1 is answered").freeze();
                match key {
                    ApiKey::ApiVersions => decodes::<ApiVersionsResponse>(key, version, answer),
                    ApiKey::Metadata => decodes::<MetadataResponse>(key, version, answer),
                    ApiKey::Fetch => decodes::<FetchResponse>(key, version, answer),
                    ApiKey::ListOffsets => decodes::<ListOffsetsResponse>(key, version, answer),
                    ApiKey::Produce => decodes::<ProduceResponse>(key, version, answer),
                    ApiKey::FindCoordinator => decodes::<FindCoordinatorResponse>(key, version, answer),
                    ApiKey::JoinGroup => decodes::<JoinGroupResponse>(key, version, answer),
                    ApiKey::SyncGroup => decodes::<SyncGroupResponse>(key, version, answer),
                    ApiKey::Heartbeat => decodes::<HeartbeatResponse>(key, version, answer),
                    ApiKey::LeaveGroup => decodes::<LeaveGroupResponse>(key, version, answer),
                    ApiKey::OffsetCommit => decodes::<OffsetCommitResponse>(key, version, answer),
                    ApiKey::OffsetFetch => decodes::<OffsetFetchResponse>(key, version, answer),
                    ApiKey::InitProducerId => decodes::<InitProducerIdResponse>(key, version, answer),
                    ApiKey::CreateTopics => decodes::<CreateTopicsResponse>(key, version, answer),
                    ApiKey::DescribeConfigs => decodes::<DescribeConfigsResponse>(key, version, answer),
                    other => panic!("no decoder for {other:?}"),
                }
            }
        }
    }

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
                ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
                ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
                ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
                _ => panic!("no codec range for {key:?}"),
            };
            assert!(within(range, min, max), "{key:?} {min}..={max} outside {range:?}");
        }
    }
}
