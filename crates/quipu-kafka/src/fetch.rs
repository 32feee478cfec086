//! Fetch: records of each asked partition from its fetch offset, within
//! the byte limits, waiting up to `max_wait_ms` for `min_bytes` (long
//! polling). A category partition holds the events of the streams that
//! hash to it (see [`crate::topic`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::records::Record;
use quipu_core::{Direction, Position, RecordedEvent, Store};

use crate::offsets::high_watermark;
use crate::record;
use crate::topic::{Topic, partition_of};
use crate::{Door, DoorConfig};

/// Events read from the store per page while filling a partition.
const PAGE_EVENTS: usize = 500;

/// One partition of the request, parsed.
#[derive(Debug, Clone)]
struct Wanted {
    topic: Result<Topic, ()>,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// The answer to `request`, once `min_bytes` are there or `max_wait_ms`
/// passed.
pub async fn answer(door: &Arc<Door>, request: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0).max(1);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
    let wanted: Vec<(kafka_protocol::messages::TopicName, Vec<Wanted>)> = request
        .topics
        .iter()
        .map(|t| {
            let topic = Topic::parse(&t.topic.0).map_err(|_| ());
            let partitions = t
                .partitions
                .iter()
                .map(|p| Wanted {
                    topic: topic.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                })
                .collect();
            (t.topic.clone(), partitions)
        })
        .collect();
    loop {
        let seen = door.store.last_position();
        let door_for_read = Arc::clone(door);
        let wanted_for_read = wanted.clone();
        let read =
            tokio::task::spawn_blocking(move || read_all(&door_for_read, &wanted_for_read, max_bytes, version)).await;
        let (response, bytes) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(%error, "a fetch read panicked");
                return FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        let now = Instant::now();
        if bytes >= min_bytes || now >= deadline {
            return response;
        }
        let store = Arc::clone(&door.store);
        let wait = deadline - now;
        let _ = tokio::task::spawn_blocking(move || store.wait_beyond(seen, wait)).await;
    }
}

/// Reads every wanted partition; the response and the record bytes in it.
fn read_all(
    door: &Door,
    wanted: &[(kafka_protocol::messages::TopicName, Vec<Wanted>)],
    max_bytes: usize,
    version: i16,
) -> (FetchResponse, usize) {
    let mut total = 0usize;
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, partitions) in wanted {
        let mut answers = Vec::with_capacity(partitions.len());
        for want in partitions {
            let room = max_bytes.saturating_sub(total);
            let (mut answer, bytes) = read_partition(door, want, room, total == 0);
            if version < 5 {
                // The log start offset is a field of version 5 on.
                answer.log_start_offset = -1;
            }
            total += bytes;
            answers.push(answer);
        }
        topics.push(FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(answers));
    }
    (FetchResponse::default().with_responses(topics), total)
}

/// One partition's answer and its record bytes. `first` lets the first
/// non-empty partition exceed the limits with one record, so a consumer
/// always makes progress.
fn read_partition(door: &Door, want: &Wanted, room: usize, first: bool) -> (PartitionData, usize) {
    let high_watermark = high_watermark(door);
    let answer = PartitionData::default()
        .with_partition_index(want.partition)
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(0);
    let Ok(topic) = &want.topic else {
        return (answer.with_error_code(ResponseError::InvalidTopicException.code()), 0);
    };
    if !(0..door.partitions(topic)).contains(&want.partition) {
        return (answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()), 0);
    }
    if want.offset < 0 || want.offset > high_watermark {
        return (answer.with_error_code(ResponseError::OffsetOutOfRange.code()), 0);
    }
    let limit = want.max_bytes.min(room);
    match records(&door.store, &door.config, topic, want, limit, first) {
        Ok((records, None)) if records.is_empty() => (answer, 0),
        Ok((_, Some(end))) if end <= want.offset => (answer, 0),
        Ok((records, end)) => {
            let last_record = records.last().map_or(want.offset - 1, |r| r.offset);
            let last_offset = end.map_or(last_record, |end| (end - 1).max(last_record));
            match record::batch(&records, want.offset, last_offset) {
                Ok(bytes) => {
                    let len = bytes.len();
                    (answer.with_records(Some(bytes)), len)
                }
                Err(error) => {
                    tracing::error!(%error, "encoding a record batch");
                    (answer.with_error_code(ResponseError::UnknownServerError.code()), 0)
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "reading for a fetch");
            (answer.with_error_code(ResponseError::KafkaStorageError.code()), 0)
        }
    }
}

/// The partition's records from the wanted offset, up to `limit` bytes
/// (at least one record when `first`), and, when the read went to the end
/// of the topic, the offset it covered up to (the high watermark before
/// the read, or past the last record read).
fn records(
    store: &Store,
    config: &DoorConfig,
    topic: &Topic,
    want: &Wanted,
    limit: usize,
    first: bool,
) -> Result<(Vec<Record>, Option<i64>), quipu_core::Error> {
    let high_watermark = store.last_position().map_or(0, |p| i64::try_from(p.0).unwrap_or(i64::MAX - 1) + 1);
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut from = Position(u64::try_from(want.offset).unwrap_or(0));
    let at_end = |records: Vec<Record>, from: Position| {
        let read_to = i64::try_from(from.0).unwrap_or(i64::MAX);
        Ok((records, Some(high_watermark.max(read_to))))
    };
    loop {
        let page = read_page(store, topic, from)?;
        let Some(last) = page.last() else { return at_end(records, from) };
        from = last.position.next();
        let last_page = page.len() < PAGE_EVENTS;
        for event in &page {
            let in_partition = match topic {
                Topic::Category(_) => {
                    partition_of(event.stream.as_str().as_bytes(), config.category_partitions) == want.partition
                }
                Topic::All | Topic::EventType(_) => true,
            };
            if !in_partition {
                continue;
            }
            let record = record::from_event(event);
            let size = record::size_estimate(&record);
            if bytes + size > limit && !(first && records.is_empty()) {
                return Ok((records, None));
            }
            bytes += size;
            records.push(record);
        }
        if last_page {
            return at_end(records, from);
        }
    }
}

fn read_page(store: &Store, topic: &Topic, from: Position) -> Result<Vec<RecordedEvent>, quipu_core::Error> {
    let from = Some(from);
    match topic {
        Topic::All => store.read_all(from, Direction::Forwards, PAGE_EVENTS),
        Topic::EventType(event_type) => store.read_event_type(event_type, from, Direction::Forwards, PAGE_EVENTS),
        Topic::Category(category) => store.read_category(category, from, Direction::Forwards, PAGE_EVENTS),
    }
}
