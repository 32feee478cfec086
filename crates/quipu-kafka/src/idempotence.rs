//! Idempotent producers: InitProducerId hands out producer ids, and each
//! batch's sequence numbers are checked per producer and partition, as a
//! Kafka broker does, so a producer's retries write nothing twice.
//!
//! What it promises: a batch whose sequence continues the partition's is
//! written; a retry of one of the last five batches answers that batch's
//! offset and writes nothing; a gap is `OUT_OF_ORDER_SEQUENCE_NUMBER`; an
//! older epoch is `INVALID_PRODUCER_EPOCH`. The state is kept in memory: a
//! producer id from before a restart is `UNKNOWN_PRODUCER_ID` (clients
//! then take a new one), so exactly-once across restarts needs
//! `quipu-event-id` headers, which the store itself deduplicates.
//! Transactions are not offered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kafka_protocol::error::ResponseError;

/// Batches remembered per producer and partition (Kafka's in-flight limit).
const RECENT_BATCHES: usize = 5;

/// A batch's producer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub epoch: i16,
    /// Sequence of the batch's first record.
    pub first: i32,
    /// Sequence of its last record.
    pub last: i32,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, then [`PartitionSequences::record`] it.
    Write,
    /// Already written at this offset: answer it, write nothing.
    Duplicate(i64),
    /// Refuse it.
    Refuse(ResponseError),
}

/// One producer's sequences in one partition.
#[derive(Debug, Default)]
struct Sequence {
    epoch: i16,
    last: i32,
    /// (first sequence, last sequence, base offset) of recent batches.
    recent: VecDeque<(i32, i32, i64)>,
}

/// One producer's sequences, per (topic, partition). Held locked while a
/// batch is checked, written and recorded, so a producer's batches to a
/// partition are decided one at a time.
#[derive(Debug, Default)]
pub struct PartitionSequences {
    sequences: HashMap<(String, i32), Sequence>,
}

impl PartitionSequences {
    /// The verdict on `batch` for `topic`/`partition`; `known` says
    /// whether this door issued the producer id.
    pub fn check(&self, topic: &str, partition: i32, batch: BatchSequence, known: bool) -> Verdict {
        let Some(state) = self.sequences.get(&(topic.to_string(), partition)) else {
            return match (batch.first, known) {
                (0, _) => Verdict::Write,
                (_, false) => Verdict::Refuse(ResponseError::UnknownProducerId),
                (_, true) => Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber),
            };
        };
        if batch.epoch < state.epoch {
            return Verdict::Refuse(ResponseError::InvalidProducerEpoch);
        }
        if batch.epoch > state.epoch {
            return if batch.first == 0 {
                Verdict::Write
            } else {
                Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(&(_, _, offset)) = state.recent.iter().find(|(f, l, _)| *f == batch.first && *l == batch.last) {
            return Verdict::Duplicate(offset);
        }
        if batch.first == state.last.wrapping_add(1) {
            Verdict::Write
        } else {
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        }
    }

    /// Records a written batch and the offset of its first record.
    pub fn record(&mut self, topic: &str, partition: i32, batch: BatchSequence, base_offset: i64) {
        let state = self.sequences.entry((topic.to_string(), partition)).or_default();
        if batch.epoch != state.epoch {
            state.recent.clear();
        }
        state.epoch = batch.epoch;
        state.last = batch.last;
        state.recent.push_back((batch.first, batch.last, base_offset));
        if state.recent.len() > RECENT_BATCHES {
            state.recent.pop_front();
        }
    }
}

/// Every idempotent producer of the door.
#[derive(Debug)]
pub struct Producers {
    next_id: AtomicI64,
    issued: Mutex<HashSet<i64>>,
    sequences: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<PartitionSequences>>>>,
}

impl Producers {
    /// Ids start at the time in microseconds, so they do not repeat across
    /// restarts.
    #[must_use]
    pub fn new(now_us: u64) -> Producers {
        Producers {
            next_id: AtomicI64::new(i64::try_from(now_us).unwrap_or(1) & 0x3fff_ffff_ffff_ffff),
            issued: Mutex::default(),
            sequences: Mutex::default(),
        }
    }

    /// A new producer id (epoch 0).
    pub fn issue(&self) -> i64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.issued.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
        id
    }

    /// Whether this door issued `id`.
    pub fn issued(&self, id: i64) -> bool {
        self.issued.lock().unwrap_or_else(PoisonError::into_inner).contains(&id)
    }

    /// The sequences of producer `id`, to lock while deciding a batch.
    pub fn sequences(&self, id: i64) -> Arc<tokio::sync::Mutex<PartitionSequences>> {
        let mut all = self.sequences.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(all.entry(id).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32) -> BatchSequence {
        BatchSequence { producer_id: 1, epoch: 0, first, last }
    }

    #[test]
    fn sequences_continue_retries_repeat_and_gaps_are_refused() {
        let mut sequences = PartitionSequences::default();
        assert_eq!(
            sequences.check("t", 0, batch(3, 4), true),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(sequences.check("t", 0, batch(3, 4), false), Verdict::Refuse(ResponseError::UnknownProducerId));
        assert_eq!(sequences.check("t", 0, batch(0, 2), true), Verdict::Write);
        sequences.record("t", 0, batch(0, 2), 100);
        assert_eq!(sequences.check("t", 0, batch(3, 3), true), Verdict::Write);
        sequences.record("t", 0, batch(3, 3), 107);
        assert_eq!(sequences.check("t", 0, batch(0, 2), true), Verdict::Duplicate(100), "a retry");
        assert_eq!(sequences.check("t", 0, batch(3, 3), true), Verdict::Duplicate(107));
        assert_eq!(
            sequences.check("t", 0, batch(5, 6), true),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(sequences.check("t", 1, batch(0, 0), true), Verdict::Write, "partitions apart");
        let older = BatchSequence { epoch: -1, ..batch(4, 4) };
        assert_eq!(sequences.check("t", 0, older, true), Verdict::Refuse(ResponseError::InvalidProducerEpoch));
        let newer = BatchSequence { epoch: 1, ..batch(0, 0) };
        assert_eq!(sequences.check("t", 0, newer, true), Verdict::Write, "a new epoch starts at 0");
        for n in 4..12 {
            sequences.record("t", 0, batch(n, n), 200 + i64::from(n));
        }
        assert_eq!(
            sequences.check("t", 0, batch(4, 4), true),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber),
            "only five are kept"
        );
    }

    #[test]
    fn ids_are_distinct_and_known() {
        let producers = Producers::new(1_000);
        let (a, b) = (producers.issue(), producers.issue());
        assert_ne!(a, b);
        assert!(producers.issued(a) && producers.issued(b) && !producers.issued(a - 1));
    }
}
