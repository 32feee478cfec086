//! [`topic_id`]: the id the brokers gave a topic when it was created
//! (Kafka 2.8 and later; a topic deleted and created again under the same
//! name gets a new one). librdkafka's client API does not give it, so it
//! is asked for here with one Kafka `Metadata` request (version 10 or
//! later), after an `ApiVersions` request says the broker knows one.

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, encode_request_header_into_buffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The first `Metadata` version that carries topic ids.
const METADATA_WITH_IDS: i16 = 10;
/// The newest `Metadata` version asked for.
const METADATA_NEWEST: i16 = 12;
/// The largest answer read (a `Metadata` answer about one topic).
const ANSWER_BYTES_MAX: usize = 16 << 20;

/// Why the topic id could not be asked for.
#[derive(Debug, thiserror::Error)]
#[error("asking {broker} for the id of topic {topic}: {reason}")]
pub struct TopicIdError {
    /// The broker asked.
    pub broker: String,
    /// The topic.
    pub topic: String,
    /// What failed.
    pub reason: String,
}

/// The id of `topic`, asked of the first of `brokers` (`host:port[,...]`)
/// that answers; `None` when the broker keeps no topic ids (an older
/// Kafka, or a broker that answers the zero id).
///
/// # Errors
/// [`TopicIdError`] when no broker could be reached or its answer did not
/// read, or the topic is not on it.
pub async fn topic_id(brokers: &str, topic: &str) -> Result<Option<uuid::Uuid>, TopicIdError> {
    let mut last = None;
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let error = |reason: String| TopicIdError { broker: broker.to_owned(), topic: topic.to_owned(), reason };
        match ask(broker, topic).await {
            Ok(id) => return Ok(id),
            Err(reason) => last = Some(error(reason)),
        }
    }
    Err(last.unwrap_or_else(|| TopicIdError {
        broker: brokers.to_owned(),
        topic: topic.to_owned(),
        reason: "no broker given".into(),
    }))
}

async fn ask(broker: &str, topic: &str) -> Result<Option<uuid::Uuid>, String> {
    let mut socket = TcpStream::connect(broker).await.map_err(|e| e.to_string())?;
    let versions: ApiVersionsResponse =
        call(&mut socket, ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default()).await?;
    let newest = versions
        .api_keys
        .iter()
        .find(|key| key.api_key == ApiKey::Metadata as i16)
        .map_or(0, |key| key.max_version)
        .min(METADATA_NEWEST);
    if newest < METADATA_WITH_IDS {
        return Ok(None);
    }
    let request = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_owned())))),
    ]));
    let metadata: MetadataResponse = call(&mut socket, ApiKey::Metadata, newest, 2, &request).await?;
    let found = metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic));
    let found = found.ok_or_else(|| "the answer does not name the topic".to_owned())?;
    if found.error_code != 0 {
        return Err(format!("Kafka error {}", found.error_code));
    }
    Ok(Some(found.topic_id).filter(|id| !id.is_nil()))
}

/// Sends `request` as `key` at `version` and reads its answer.
async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
    socket: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<Resp, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("quipu-cluster")));
    let mut frame = vec![0; 4];
    encode_request_header_into_buffer(&mut frame, &header).map_err(|e| e.to_string())?;
    request.encode(&mut frame, version).map_err(|e| e.to_string())?;
    let length = i32::try_from(frame.len() - 4).map_err(|_| "a request over 2 GiB".to_owned())?;
    if let Some(prefix) = frame.get_mut(..4) {
        prefix.copy_from_slice(&length.to_be_bytes());
    }
    socket.write_all(&frame).await.map_err(|e| e.to_string())?;
    let length = socket.read_i32().await.map_err(|e| e.to_string())?;
    let length = usize::try_from(length)
        .ok()
        .filter(|length| *length <= ANSWER_BYTES_MAX)
        .ok_or_else(|| format!("an answer of {length} bytes"))?;
    let mut answer = vec![0; length];
    socket.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
    let mut answer = Bytes::from(answer);
    let header = ResponseHeader::decode(&mut answer, Resp::header_version(version)).map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err("an answer to another request".into());
    }
    Resp::decode(&mut answer, version).map_err(|e| e.to_string())
}
