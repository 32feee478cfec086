//! The Kafka record a publisher makes of an event, and how it recognises
//! its own records in the topic.
//!
//! Key = stream name, value = event data, timestamp = commit time (ms),
//! headers:
//!
//! | header | value |
//! | --- | --- |
//! | `quipu-event-id` | the event id (UUID text): the idempotency key |
//! | `quipu-event-type` | the event type |
//! | `quipu-stream-revision` | the revision in its stream (decimal) |
//! | `quipu-position` | the position in `$all` (decimal) |
//! | `quipu-publisher` | the publisher's name |
//! | `quipu-metadata` | the event metadata, when it has any |

use quipu_client::Event;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// Header with the event id.
pub const EVENT_ID: &str = "quipu-event-id";
/// Header with the event type.
pub const EVENT_TYPE: &str = "quipu-event-type";
/// Header with the stream revision.
pub const STREAM_REVISION: &str = "quipu-stream-revision";
/// Header with the position in `$all`.
pub const POSITION: &str = "quipu-position";
/// Header with the publisher's name.
pub const PUBLISHER: &str = "quipu-publisher";
/// Header with the event metadata.
pub const METADATA: &str = "quipu-metadata";

/// The headers of `event` published by `publisher`.
#[must_use]
pub fn headers(event: &Event, publisher: &str) -> OwnedHeaders {
    let id = event.id.to_string();
    let revision = event.revision.to_string();
    let position = event.position.to_string();
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header { key: EVENT_ID, value: Some(id.as_str()) })
        .insert(Header { key: EVENT_TYPE, value: Some(event.event_type.as_str()) })
        .insert(Header { key: STREAM_REVISION, value: Some(revision.as_str()) })
        .insert(Header { key: POSITION, value: Some(position.as_str()) })
        .insert(Header { key: PUBLISHER, value: Some(publisher) });
    if event.metadata.is_empty() {
        headers
    } else {
        headers.insert(Header { key: METADATA, value: Some(event.metadata.as_slice()) })
    }
}

/// The position of the event a record carries, when `publisher` wrote it;
/// `None` for records of anyone else.
#[must_use]
pub fn published_position<M: Message>(message: &M, publisher: &str) -> Option<u64> {
    let headers = message.headers()?;
    let value = |key: &str| headers.iter().find(|h| h.key == key).and_then(|h| h.value);
    if value(PUBLISHER)? != publisher.as_bytes() {
        return None;
    }
    std::str::from_utf8(value(POSITION)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::message::Timestamp;

    use super::*;

    fn event(metadata: &[u8]) -> Event {
        Event {
            id: "6f0e6d54-3e49-4a52-9b0c-2b1b7d6d3f10".parse().expect("uuid"),
            stream: "order-7".into(),
            event_type: "OrderShipped".into(),
            data: b"{}".to_vec(),
            metadata: metadata.to_vec(),
            tags: vec![],
            revision: quipu_client::Revision(3),
            position: quipu_client::Position(42),
            recorded_at_us: 1_000_000,
        }
    }

    fn message(headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(None, Some(b"order-7".to_vec()), "t".into(), Timestamp::NotAvailable, 0, 0, Some(headers))
    }

    #[test]
    fn a_record_names_its_event_and_publisher() {
        let made = headers(&event(b"{\"by\":\"x\"}"), "shipping");
        let pairs: Vec<(String, Vec<u8>)> =
            made.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect();
        assert_eq!(
            pairs,
            [
                (EVENT_ID.into(), b"6f0e6d54-3e49-4a52-9b0c-2b1b7d6d3f10".to_vec()),
                (EVENT_TYPE.into(), b"OrderShipped".to_vec()),
                (STREAM_REVISION.into(), b"3".to_vec()),
                (POSITION.into(), b"42".to_vec()),
                (PUBLISHER.into(), b"shipping".to_vec()),
                (METADATA.into(), b"{\"by\":\"x\"}".to_vec()),
            ]
        );
        assert_eq!(headers(&event(b""), "shipping").count(), 5, "no metadata header without metadata");
    }

    #[test]
    fn only_the_publishers_own_records_count() {
        let own = message(headers(&event(b""), "shipping"));
        assert_eq!(published_position(&own, "shipping"), Some(42));
        assert_eq!(published_position(&own, "billing"), None);
        let foreign = message(OwnedHeaders::new().insert(Header { key: POSITION, value: Some("9") }));
        assert_eq!(published_position(&foreign, "shipping"), None);
    }
}
