//! ListOffsets: the earliest offset (0: positions start there), the latest
//! (the high watermark: one past the last position), the newest record's
//! (`-3`: the last position), or the first at or after a time.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::Door;
use crate::topic::Topic;

/// `timestamp` asking for the high watermark.
const LATEST: i64 = -1;
/// `timestamp` asking for the first offset.
const EARLIEST: i64 = -2;
/// `timestamp` asking for the offset of the newest record.
const MAX_TIMESTAMP: i64 = -3;

/// The answer to `request`.
pub async fn answer(door: &Arc<Door>, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let parsed = Topic::parse(&topic.name.0);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let answer = ListOffsetsPartitionResponse::default().with_partition_index(partition.partition_index);
            let answer = match &parsed {
                Err(_) => answer.with_error_code(ResponseError::InvalidTopicException.code()),
                Ok(t) if !(0..door.partitions(t)).contains(&partition.partition_index) => {
                    answer.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                }
                Ok(_) => {
                    let (timestamp, offset) = offset_for(door, partition.timestamp).await;
                    answer.with_timestamp(timestamp).with_offset(offset)
                }
            };
            partitions.push(answer);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (timestamp, offset) answer for `timestamp`; (-1, -1) when no
/// record is at or after a time.
async fn offset_for(door: &Arc<Door>, timestamp: i64) -> (i64, i64) {
    let high_watermark = high_watermark(door);
    match timestamp {
        LATEST => (-1, high_watermark),
        EARLIEST => (-1, 0),
        MAX_TIMESTAMP => (-1, high_watermark - 1),
        millis => {
            let store = Arc::clone(&door.store);
            let before = u64::try_from(millis).unwrap_or(0).saturating_mul(1000).checked_sub(1);
            let found = door.read(move || before.map(|b| store.position_at(b))).await;
            let first = match found {
                Some(Some(Ok(Some(position)))) => i64::try_from(position.0).unwrap_or(i64::MAX) + 1,
                Some(None | Some(Ok(None))) => 0,
                Some(Some(Err(error))) => {
                    tracing::warn!(%error, "looking up an offset by time");
                    return (-1, -1);
                }
                None => return (-1, -1),
            };
            if first < high_watermark { (millis, first) } else { (-1, -1) }
        }
    }
}

/// One past the last position: the offset the next event takes.
pub fn high_watermark(door: &Door) -> i64 {
    door.store.last_position().map_or(0, |p| i64::try_from(p.0).unwrap_or(i64::MAX - 1) + 1)
}
