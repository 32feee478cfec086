//! Produce: records sent to a category topic are appended to the stream
//! each record's key names, one atomic append per partition batch.
//!
//! A record needs a key (the stream, which must be in the topic's
//! category), a value (the event data) and a `quipu-event-type` header.
//! `quipu-event-id` (a UUID) makes retries idempotent: the same ids again
//! write nothing and answer the first offsets. `quipu-metadata` becomes the
//! event's metadata. `quipu-expected-revision` (`any`, `no_stream`,
//! `stream_exists` or a revision) is optimistic concurrency: when it does
//! not hold, nothing of the batch is written and the partition answers
//! `INVALID_RECORD` with a message naming the stream, the expected and
//! the actual revision. Later records of one stream in a batch may carry
//! the header too, when it says what the records before make true.
//!
//! `quipu.all` and `quipu.type.*` are read-only. Compressed batches are
//! refused with `UNSUPPORTED_COMPRESSION_TYPE`. Batches of idempotent
//! producers are checked by [`crate::idempotence`]; transactional ones
//! are refused (InitProducerId with a transactional id answers
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use quipu_core::{
    AppendOutcome, AppendRequest, EventId, EventType, ExpectedRevision, ProposedEvent, Revision, StreamName,
    StreamWrite,
};

use crate::Door;
use crate::idempotence::{BatchSequence, Verdict};
use crate::record::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, METADATA_HEADER};
use crate::topic::Topic;

/// Header giving a record's expected stream revision.
pub const EXPECTED_REVISION_HEADER: &str = "quipu-expected-revision";

/// Why a partition batch was not written.
struct Refused {
    error: ResponseError,
    message: String,
}

impl Refused {
    fn new(error: ResponseError, message: impl Into<String>) -> Refused {
        Refused { error, message: message.into() }
    }
}

/// The answer to `request` (the caller sends none for `acks = 0`); the
/// refusal's message goes in `error_message` from version 8 on.
pub async fn answer(door: &Arc<Door>, request: &ProduceRequest, version: i16) -> ProduceResponse {
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in &request.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in &topic.partition_data {
            let answer = PartitionProduceResponse::default().with_index(partition.index).with_log_append_time_ms(-1);
            let answer = match produce(door, &topic.name.0, partition.index, partition.records.clone()).await {
                Ok(base_offset) => answer.with_base_offset(base_offset),
                Err(refused) => answer
                    .with_error_code(refused.error.code())
                    .with_base_offset(-1)
                    .with_error_message((version >= 8).then(|| StrBytes::from_string(refused.message))),
            };
            partitions.push(answer);
        }
        topics.push(TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partitions));
    }
    ProduceResponse::default().with_responses(topics)
}

/// Appends one partition batch; the offset of its first event.
async fn produce(door: &Arc<Door>, topic: &str, partition: i32, records: Option<Bytes>) -> Result<i64, Refused> {
    let topic = Topic::parse(topic).map_err(|e| Refused::new(ResponseError::InvalidTopicException, e.to_string()))?;
    let Topic::Category(category) = &topic else {
        return Err(Refused::new(
            ResponseError::InvalidTopicException,
            format!("{} is read-only: produce to a category topic", topic.name()),
        ));
    };
    if !(0..door.partitions(&topic)).contains(&partition) {
        return Err(Refused::new(ResponseError::UnknownTopicOrPartition, format!("no partition {partition}")));
    }
    let mut bytes = records.ok_or_else(|| Refused::new(ResponseError::CorruptMessage, "no records"))?;
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| Refused::new(ResponseError::CorruptMessage, format!("record batch does not decode: {e}")))?;
    let records: Vec<&Record> = sets.iter().flat_map(|s| s.records.iter()).collect();
    let request = append_request(category, (partition, door.partitions(&topic)), &records)?;
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(Refused::new(ResponseError::CorruptMessage, "a batch without records"));
    };
    if first.producer_id < 0 {
        return write(door, request).await;
    }
    // An idempotent producer: decide on its sequence, under its lock.
    let batch = BatchSequence {
        producer_id: first.producer_id,
        epoch: first.producer_epoch,
        first: first.sequence,
        last: last.sequence,
    };
    let sequences = door.producers.sequences(batch.producer_id);
    let mut sequences = sequences.lock().await;
    let topic_name = topic.name();
    match sequences.check(&topic_name, partition, batch, door.producers.issued(batch.producer_id)) {
        Verdict::Duplicate(offset) => Ok(offset),
        Verdict::Refuse(error) => {
            Err(Refused::new(error, format!("producer {} sequence {}", batch.producer_id, batch.first)))
        }
        Verdict::Write => {
            let offset = write(door, request).await?;
            sequences.record(&topic_name, partition, batch, offset);
            Ok(offset)
        }
    }
}

/// Appends `request`; the offset of its first event.
async fn write(door: &Door, request: AppendRequest) -> Result<i64, Refused> {
    let outcome = door.submit(request).await.map_err(|refusal| {
        Refused::new(ResponseError::InvalidRecord, format!("{}: {}", refusal.code, refusal.message))
    })?;
    let result = match outcome {
        AppendOutcome::Written(result) | AppendOutcome::AlreadyWritten(result) => result,
        AppendOutcome::Conflict(conflict) => {
            let streams: Vec<String> = conflict
                .streams
                .iter()
                .map(|s| format!("{} expected {:?}, is at {:?}", s.stream, s.expected, s.actual.map(|r| r.0)))
                .collect();
            return Err(Refused::new(
                ResponseError::InvalidRecord,
                format!("wrong_expected_revision: {}; nothing was written", streams.join("; ")),
            ));
        }
    };
    Ok(i64::try_from(result.first_position.0).unwrap_or(i64::MAX))
}

/// InitProducerId: a new producer id at epoch 0; transactions are not
/// offered.
pub fn init_producer_id(door: &Door, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    InitProducerIdResponse::default().with_producer_id(ProducerId(door.producers.issue())).with_producer_epoch(0)
}

/// The records of one batch as one append: a write per stream, in the
/// order the streams first appear.
fn append_request(
    category: &str,
    (partition, partitions): (i32, i32),
    records: &[&Record],
) -> Result<AppendRequest, Refused> {
    let mut writes: Vec<(StreamWrite, Option<ExpectedRevision>)> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let invalid = |reason: String| Refused::new(ResponseError::InvalidRecord, format!("record {index}: {reason}"));
        let key = record.key.as_ref().ok_or_else(|| invalid("no key: the key names the stream".into()))?;
        let stream = std::str::from_utf8(key).map_err(|_| invalid("the key is not UTF-8".into()))?;
        let stream = StreamName::new(stream).map_err(|e| invalid(e.to_string()))?;
        if stream.category() != category {
            return Err(invalid(format!("stream {stream} is not in category {category}")));
        }
        // A record is read from its stream's partition: one sent elsewhere
        // would be reported at a place no consumer finds it.
        let home = crate::topic::partition_of(key, partitions);
        if home != partition {
            return Err(invalid(format!(
                "stream {stream} is in partition {home} of {category}, not {partition}: partitions follow \
                 murmur2(key), Kafka's default partitioner (librdkafka: partitioner=murmur2_random)"
            )));
        }
        let event = event(record).map_err(invalid)?;
        let expected =
            header(record, EXPECTED_REVISION_HEADER).map(|text| parse_expected(&text)).transpose().map_err(invalid)?;
        match writes.iter_mut().find(|(w, _)| w.stream == stream) {
            Some((write, first)) => {
                if let Some(expected) = expected {
                    let implied = implied(*first, write.events.len());
                    if implied != Some(expected) {
                        return Err(invalid(format!(
                            "{EXPECTED_REVISION_HEADER} {expected:?} contradicts the records of {stream} before it in the batch"
                        )));
                    }
                }
                write.events.push(event);
            }
            None => {
                let write =
                    StreamWrite { stream, expected: expected.unwrap_or(ExpectedRevision::Any), events: vec![event] };
                writes.push((write, expected));
            }
        }
    }
    if writes.is_empty() {
        return Err(Refused::new(ResponseError::CorruptMessage, "a batch without records"));
    }
    Ok(AppendRequest { writes: writes.into_iter().map(|(w, _)| w).collect(), condition: None })
}

/// The expected revision the `n`th record of a stream implies, given the
/// first record's header (`None`: any is fine only without a header).
fn implied(first: Option<ExpectedRevision>, n: usize) -> Option<ExpectedRevision> {
    match first? {
        ExpectedRevision::Exact(revision) => Some(ExpectedRevision::Exact(Revision(revision.0 + n as u64))),
        ExpectedRevision::NoStream => Some(ExpectedRevision::Exact(Revision(n as u64 - 1))),
        other => Some(other),
    }
}

fn event(record: &Record) -> Result<ProposedEvent, String> {
    let event_type = header(record, EVENT_TYPE_HEADER).ok_or(format!("no {EVENT_TYPE_HEADER} header"))?;
    let event_type = EventType::new(event_type).map_err(|e| e.to_string())?;
    let data = record.value.as_ref().ok_or("no value: the value is the event's data")?;
    let mut event = ProposedEvent::new(event_type, data.to_vec());
    if let Some(id) = header(record, EVENT_ID_HEADER) {
        event.id = EventId::parse(&id).map_err(|e| e.to_string())?;
    }
    if let Some(metadata) = record.headers.iter().find(|(k, _)| &***k == METADATA_HEADER).and_then(|(_, v)| v.clone()) {
        event.metadata = metadata.to_vec();
    }
    Ok(event)
}

/// A header's value as text; `None` when absent or null.
fn header(record: &Record, name: &str) -> Option<String> {
    let value = record.headers.iter().find(|(k, _)| &***k == name).and_then(|(_, v)| v.as_ref())?;
    Some(String::from_utf8_lossy(value).into_owned())
}

fn parse_expected(text: &str) -> Result<ExpectedRevision, String> {
    text.parse().map_err(|error| format!("{EXPECTED_REVISION_HEADER}: {error}"))
}
