//! Fetch: records of each asked partition from its fetch offset, within
//! the byte limits, waiting up to `max_wait_ms` for `min_bytes` (long
//! polling). A category partition holds the events of the streams that
//! hash to it (see [`crate::topic`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::records::Record;
use quipu_core::{Position, RecordedEvent};
use quipu_node::feed::Source;
use quipu_node::{ApiError, ReadRequest, Reads};

use crate::Door;
use crate::batches::{Asked, Made};
use crate::offsets::high_watermark;
use crate::record;
use crate::topic::{Topic, partition_of};

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
        // What another fetch made already is answered here, without a
        // turn on the readers.
        let read = match read_all(door, &wanted, max_bytes, version, Reading::Kept) {
            Some(answered) => Some(answered),
            None => {
                let door_for_read = Arc::clone(door);
                let wanted_for_read = wanted.clone();
                door.read(move || read_all(&door_for_read, &wanted_for_read, max_bytes, version, Reading::Log))
                    .await
                    .flatten()
            }
        };
        let Some((response, bytes)) = read else {
            tracing::error!("a fetch read failed");
            return FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code());
        };
        let now = Instant::now();
        if bytes >= min_bytes || now >= deadline {
            return response;
        }
        // Waiting holds no thread: the head's channel wakes the poll.
        let waiting = Waiting::new(door);
        let mut head = door.head.clone();
        let beyond = |last: &Option<quipu_core::Position>| last.is_some() && *last > seen;
        let _ = tokio::time::timeout(deadline - now, head.wait_for(beyond)).await;
        // Many polls woken together read once per pause, not once per
        // commit each: what the pause gathers comes in one answer.
        let pause = waiting.pause().min(deadline.saturating_duration_since(Instant::now()));
        if pause >= WAKE_PAUSE_MIN {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Pause after a wake per fetch waiting at that moment.
const WAKE_PAUSE_PER_WAITER: Duration = Duration::from_micros(10);
/// Longest pause after a wake.
const WAKE_PAUSE_MAX: Duration = Duration::from_millis(20);
/// Pauses shorter than this are not taken: a few polls read at once.
const WAKE_PAUSE_MIN: Duration = Duration::from_millis(1);

/// A fetch counted among the door's waiting ones while it lives.
struct Waiting<'a> {
    door: &'a Door,
}

impl<'a> Waiting<'a> {
    fn new(door: &'a Door) -> Waiting<'a> {
        door.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting { door }
    }

    /// How long to let new events gather after a wake: longer the more
    /// fetches wait, up to [`WAKE_PAUSE_MAX`].
    fn pause(&self) -> Duration {
        let waiting = u32::try_from(self.door.waiting.load(Ordering::Acquire)).unwrap_or(u32::MAX);
        WAKE_PAUSE_PER_WAITER.saturating_mul(waiting).min(WAKE_PAUSE_MAX)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.door.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a fetch's records may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Only batches kept from other fetches (no store read: this runs on
    /// the async task).
    Kept,
    /// Kept batches, else the log (a blocking read, on the readers).
    Log,
}

/// Reads every wanted partition; the response and the record bytes in it.
/// `None` when `reading` is [`Reading::Kept`] and a partition's records
/// are not kept.
fn read_all(
    door: &Door,
    wanted: &[(kafka_protocol::messages::TopicName, Vec<Wanted>)],
    max_bytes: usize,
    version: i16,
    reading: Reading,
) -> Option<(FetchResponse, usize)> {
    let mut total = 0usize;
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, partitions) in wanted {
        let (mut answers, bytes) = read_topic(door, partitions, max_bytes.saturating_sub(total), total == 0, reading)?;
        total += bytes;
        if version < 5 {
            // The log start offset is a field of version 5 on.
            answers.iter_mut().for_each(|answer| answer.log_start_offset = -1);
        }
        topics.push(FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(answers));
    }
    Some((FetchResponse::default().with_responses(topics), total))
}

/// The answers for the wanted partitions of one topic, and their record
/// bytes. The valid ones are read by one scan of the topic (see
/// [`scan`]); `first` lets the first record of the response exceed the
/// limits, so a consumer always makes progress. `None` when `reading` is
/// [`Reading::Kept`] and the records are not kept.
fn read_topic(
    door: &Door,
    partitions: &[Wanted],
    room: usize,
    first: bool,
    reading: Reading,
) -> Option<(Vec<PartitionData>, usize)> {
    let high_watermark = high_watermark(door);
    let mut answers = Vec::with_capacity(partitions.len());
    let mut valid = Vec::new();
    for want in partitions {
        let answer = PartitionData::default()
            .with_partition_index(want.partition)
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark)
            .with_log_start_offset(0);
        let error = match &want.topic {
            Err(()) => Some(ResponseError::InvalidTopicException),
            Ok(topic) if !(0..door.partitions(topic)).contains(&want.partition) => {
                Some(ResponseError::UnknownTopicOrPartition)
            }
            Ok(_) if want.offset < 0 || want.offset > high_watermark => Some(ResponseError::OffsetOutOfRange),
            Ok(_) => None,
        };
        match error {
            Some(error) => answers.push(answer.with_error_code(error.code())),
            None => {
                valid.push(answers.len());
                answers.push(answer);
            }
        }
    }
    let Some(Ok(topic)) = valid.first().and_then(|&i| partitions.get(i)).map(|w| &w.topic) else {
        return Some((answers, 0));
    };
    let wants: Vec<&Wanted> = valid.iter().filter_map(|&i| partitions.get(i)).collect();
    // One partition asked (a consumer of `$all` or a type, or one
    // partition of a category): another fetch may have made its batch.
    let asked = match wants.as_slice() {
        [want] => Some(Asked {
            topic: topic.clone(),
            partition: want.partition,
            offset: want.offset,
            limit: want.max_bytes.min(room),
            first,
        }),
        _ => None,
    };
    if let (Some(asked), Some(&i)) = (&asked, valid.first())
        && let Some(records) = door.batches.get(asked, high_watermark)
        && let Some(answer) = answers.get_mut(i)
    {
        let bytes = records.len();
        answer.records = Some(records);
        return Some((answers, bytes));
    }
    if reading == Reading::Kept {
        return None;
    }
    let scanned = match scan(door, topic, &wants, room, first) {
        Ok(scanned) => scanned,
        Err(error) => {
            tracing::error!(%error, "reading for a fetch");
            for &i in &valid {
                if let Some(answer) = answers.get_mut(i) {
                    answer.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            return Some((answers, 0));
        }
    };
    let mut bytes = 0;
    for ((&i, want), Gathered { records, end, .. }) in valid.iter().zip(&wants).zip(scanned) {
        let Some(answer) = answers.get_mut(i) else { continue };
        if records.is_empty() && end.is_none_or(|end| end <= want.offset) {
            continue;
        }
        let last_record = records.last().map_or(want.offset - 1, |r| r.offset);
        let last_offset = end.map_or(last_record, |end| (end - 1).max(last_record));
        match record::batch(&records, want.offset, last_offset) {
            Ok(batch) => {
                bytes += batch.len();
                if let Some(asked) = asked.clone() {
                    let made = Made { records: batch.clone(), watermark: high_watermark, at_end: end.is_some() };
                    door.batches.keep(asked, made);
                }
                answer.records = Some(batch);
            }
            Err(error) => {
                tracing::error!(%error, "encoding a record batch");
                answer.error_code = ResponseError::UnknownServerError.code();
            }
        }
    }
    Some((answers, bytes))
}

/// What one scan gathered for one partition.
#[derive(Default)]
struct Gathered {
    records: Vec<Record>,
    bytes: usize,
    /// Its byte limit was reached: it takes no more records.
    full: bool,
    /// When the scan went to the end of the topic without the partition
    /// filling up: the offset the read covered up to.
    end: Option<i64>,
}

/// Reads `topic` once from the lowest wanted offset and gives each
/// wanted partition its records from its own offset, up to its byte
/// limit and `room` in all. For each, it also gives, when the scan went to
/// the end of the topic without the partition filling up, the offset the
/// read covered up to (the high watermark before the read, or past the
/// last event read), so its batch can span the gap after its records.
fn scan(door: &Door, topic: &Topic, wants: &[&Wanted], room: usize, first: bool) -> Result<Vec<Gathered>, ApiError> {
    let high_watermark = door.store.last_position().map_or(0, |p| i64::try_from(p.0).unwrap_or(i64::MAX - 1) + 1);
    let mut gathered: Vec<Gathered> = wants.iter().map(|_| Gathered::default()).collect();
    let mut total = 0usize;
    let lowest = wants.iter().map(|w| w.offset).min().unwrap_or(0);
    let mut from = Position(u64::try_from(lowest).unwrap_or(0));
    let reached_end = loop {
        let page = read_page(&door.reads, topic, from)?;
        let Some(last) = page.last() else { break true };
        from = last.position.next();
        let last_page = page.len() < PAGE_EVENTS;
        for event in &page {
            let partition = match topic {
                Topic::Category(_) => partition_of(event.stream.as_str().as_bytes(), door.config.category_partitions),
                Topic::All | Topic::EventType(_) => 0,
            };
            let position = i64::try_from(event.position.0).unwrap_or(i64::MAX);
            let Some((want, slot)) = wants.iter().zip(gathered.iter_mut()).find(|(w, _)| w.partition == partition)
            else {
                continue;
            };
            if slot.full || position < want.offset {
                continue;
            }
            let record = record::from_event(event);
            let size = record::size_estimate(&record);
            let any = first && total == 0;
            if (slot.bytes + size > want.max_bytes || total + size > room) && !any {
                slot.full = true;
                continue;
            }
            slot.bytes += size;
            total += size;
            slot.records.push(record);
        }
        if gathered.iter().all(|g| g.full) || total >= room {
            break false;
        }
        if last_page {
            break true;
        }
    };
    let read_to = i64::try_from(from.0).unwrap_or(i64::MAX);
    for g in &mut gathered {
        g.end = (reached_end && !g.full).then(|| high_watermark.max(read_to));
    }
    Ok(gathered)
}

/// A page of `topic` from `from`, read through the node's read path.
fn read_page(reads: &Reads, topic: &Topic, from: Position) -> Result<Vec<RecordedEvent>, ApiError> {
    let source = match topic {
        Topic::All => Source::All,
        Topic::EventType(event_type) => Source::Type(event_type.clone()),
        Topic::Category(category) => Source::Category(category.clone()),
    };
    reads.read_now(&ReadRequest::forwards(source, Some(from.0), PAGE_EVENTS))
}
