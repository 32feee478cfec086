//! An event as a Kafka record, and a run of them as a record batch.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use quipu_core::RecordedEvent;

/// Header carrying the event id.
pub const EVENT_ID_HEADER: &str = "quipu-event-id";
/// Header carrying the event type.
pub const EVENT_TYPE_HEADER: &str = "quipu-event-type";
/// Header carrying the event's revision in its stream.
pub const REVISION_HEADER: &str = "quipu-stream-revision";
/// Header carrying the event's metadata (only when it has some).
pub const METADATA_HEADER: &str = "quipu-metadata";

/// The record of `event`: offset = position, key = stream, value = data.
#[must_use]
pub fn from_event(event: &RecordedEvent) -> Record {
    let mut headers = IndexMap::new();
    let header = |text: String| Some(Bytes::from(text));
    headers.insert(StrBytes::from_static_str(EVENT_ID_HEADER), header(event.id.to_string()));
    headers.insert(StrBytes::from_static_str(EVENT_TYPE_HEADER), header(event.event_type.as_str().to_string()));
    headers.insert(StrBytes::from_static_str(REVISION_HEADER), header(event.revision.0.to_string()));
    if !event.metadata.is_empty() {
        headers.insert(StrBytes::from_static_str(METADATA_HEADER), Some(Bytes::from(event.metadata.clone())));
    }
    let offset = i64::try_from(event.position.0).unwrap_or(i64::MAX);
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        // Constant offset - sequence keeps the records in one batch.
        sequence: offset as i32,
        timestamp: i64::try_from(event.recorded_at_us / 1000).unwrap_or(i64::MAX),
        key: Some(Bytes::from(event.stream.as_str().as_bytes().to_vec())),
        value: Some(Bytes::from(event.data.clone())),
        headers,
    }
}

/// Bytes a record adds to a batch, roughly (for fetch limits).
#[must_use]
pub fn size_estimate(record: &Record) -> usize {
    let headers: usize = record.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 4).sum();
    record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + headers + 16
}

/// Bytes of a v2 batch header, up to and including its record count.
const BATCH_HEADER_BYTES: usize = 61;

/// The attributes bit of a control batch (low byte).
const CONTROL_ATTRIBUTE: u8 = 0x20;

/// `records` as one uncompressed record batch (format v2) whose last
/// offset is `last_offset` when that is past its last record, or, with no
/// records, an empty control batch from `first_offset` to `last_offset`. A topic
/// partition here has gaps (offsets are positions in `$all`); a batch that
/// spans the gap after its records moves the consumer past it, as batches
/// left by compaction do in Kafka, so it reaches the high watermark.
///
/// # Errors
/// The encoder's message, which only a bug can cause.
pub fn batch(records: &[Record], first_offset: i64, last_offset: i64) -> Result<Bytes, String> {
    let mut buffer = BytesMut::new();
    if records.is_empty() {
        buffer.extend_from_slice(&first_offset.to_be_bytes());
        buffer.extend_from_slice(&((BATCH_HEADER_BYTES - 12) as i32).to_be_bytes());
        buffer.extend_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
        // magic, CRC (below), attributes: a control batch, so that clients
        // take a batch without records as a marker to step over; librdkafka
        // takes an ordinary one for a truncated answer and grows its fetch
        // size until it reports MSG_SIZE_TOO_LARGE.
        buffer.extend_from_slice(&[2, 0, 0, 0, 0, 0, CONTROL_ATTRIBUTE]);
        buffer.extend_from_slice(&0i32.to_be_bytes()); // last offset delta (below)
        buffer.extend_from_slice(&[0; 16]); // base and max timestamps
        buffer.extend_from_slice(&NO_PRODUCER_ID.to_be_bytes());
        buffer.extend_from_slice(&NO_PRODUCER_EPOCH.to_be_bytes());
        buffer.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        buffer.extend_from_slice(&0i32.to_be_bytes()); // record count
        debug_assert_eq!(buffer.len(), BATCH_HEADER_BYTES);
    } else {
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(&mut buffer, records, &options).map_err(|e| e.to_string())?;
    }
    let base_offset = i64::from_be_bytes(buffer.get(..8).and_then(|b| b.try_into().ok()).ok_or("short batch")?);
    let current = i32::from_be_bytes(buffer.get(23..27).and_then(|b| b.try_into().ok()).ok_or("short batch")?);
    let wanted = i32::try_from(last_offset - base_offset).map_err(|_| "a batch spanning 2^31 offsets")?;
    if wanted > current {
        buffer.get_mut(23..27).ok_or("short batch")?.copy_from_slice(&wanted.to_be_bytes());
        let crc = crc32c::crc32c(buffer.get(21..).unwrap_or_default());
        buffer.get_mut(17..21).ok_or("short batch")?.copy_from_slice(&crc.to_be_bytes());
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;
    use quipu_core::{EventId, EventType, Position, Revision, StreamName};

    use super::*;

    fn event(position: u64, metadata: &[u8]) -> RecordedEvent {
        RecordedEvent {
            id: EventId::random(),
            stream: StreamName::new("order-7").expect("valid"),
            revision: Revision(position / 2),
            position: Position(position),
            event_type: EventType::new("OrderPlaced").expect("valid"),
            data: format!("{{\"n\":{position}}}").into_bytes(),
            metadata: metadata.to_vec(),
            tags: Vec::new(),
            recorded_at_us: 1_700_000_000_123_456 + position,
        }
    }

    #[test]
    fn a_batch_with_gaps_decodes_to_the_events() {
        let events = [event(3, b""), event(7, b"{\"by\":\"me\"}"), event(8, b"")];
        let records: Vec<Record> = events.iter().map(from_event).collect();
        let mut bytes = batch(&records, 3, 8).expect("encodes");
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decodes");
        assert_eq!(sets.len(), 1, "one batch");
        let decoded = &sets[0].records;
        assert_eq!(decoded.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 7, 8]);
        for (record, event) in decoded.iter().zip(&events) {
            assert_eq!(record.key.as_deref(), Some(b"order-7".as_slice()));
            assert_eq!(record.value.as_deref(), Some(event.data.as_slice()));
            assert_eq!(record.timestamp, 1_700_000_000_123);
            let header = |name: &str| record.headers.iter().find(|(k, _)| &***k == name).and_then(|(_, v)| v.clone());
            assert_eq!(header(EVENT_ID_HEADER), Some(Bytes::from(event.id.to_string())));
            assert_eq!(header(EVENT_TYPE_HEADER), Some(Bytes::from_static(b"OrderPlaced")));
            assert_eq!(header(REVISION_HEADER), Some(Bytes::from(event.revision.0.to_string())));
            assert_eq!(header(METADATA_HEADER).is_some(), !event.metadata.is_empty());
        }
    }

    #[test]
    fn a_batch_can_span_the_gap_after_its_records_or_be_empty() {
        let records = vec![from_event(&event(3, b""))];
        let mut spanning = batch(&records, 3, 9).expect("encodes");
        let info = RecordBatchDecoder::decode_batch_info(&mut spanning.clone()).expect("a valid batch, CRC included");
        assert_eq!(info.len(), 1);
        assert_eq!(i32::from_be_bytes(spanning[23..27].try_into().expect("4 bytes")), 6, "last offset 9");
        assert_eq!(RecordBatchDecoder::decode_all(&mut spanning).expect("decodes")[0].records.len(), 1);
        let mut empty = batch(&[], 10, 14).expect("encodes");
        assert_eq!(empty.len(), BATCH_HEADER_BYTES);
        assert_eq!(i64::from_be_bytes(empty[..8].try_into().expect("8 bytes")), 10);
        assert_eq!(i32::from_be_bytes(empty[23..27].try_into().expect("4 bytes")), 4);
        assert_eq!(empty[21..23], [0, CONTROL_ATTRIBUTE], "a control batch, which clients step over");
        let sets = RecordBatchDecoder::decode_all(&mut empty).expect("an empty batch decodes, CRC included");
        assert!(sets.iter().all(|s| s.records.is_empty()));
    }
}
