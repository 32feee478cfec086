//! One order for the records of every partition, the same on every node.
//!
//! Kafka orders the records of a partition, not those of a topic. Every
//! node must still apply proposals in the same order, so that positions in
//! `$all`, decisions that read more than one partition (event ids, DCB
//! conditions) and timestamps agree. Arrival order cannot give that: it
//! depends on fetch timing. The order here is a function of the
//! partitions' contents alone, the way deterministic databases order the
//! batches of several sequencers (Calvin's epochs):
//!
//! - each partition is cut into epochs by [`Entry::Tick`] records: a tick
//!   of epoch `e` starts epoch `e` in its partition when `e` is newer than
//!   the partition's current epoch (an older tick changes nothing); a
//!   partition starts in epoch 0; a data record belongs to the epoch its
//!   partition is in when it comes;
//! - the merged order is by [`MergeKey`]: epoch, then partition, then
//!   offset;
//! - a record is given out once nothing can still come before it: every
//!   partition before its own is past its epoch, and every partition after
//!   its own is at its epoch or past it (a partition's later records fall
//!   in its current epoch or a newer one).
//!
//! With one partition every record goes out as soon as it comes. With
//! several, a record waits until the other partitions have moved on, so
//! nodes tick every partition once they produced a proposal (see
//! `docs/cluster.md`).

use std::collections::VecDeque;

/// Where a record stands in the merged order: its partition's epoch when
/// it came, its partition, its offset, compared in that order. It is the
/// engine's [`quipu_core::Source`], which an applied commit records, so
/// what a store holds and where the merge resumes are one value.
pub type MergeKey = quipu_core::Source;

/// A record of a partition, as the merger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<T> {
    /// Starts this epoch in its partition if it is newer than the current.
    Tick(u64),
    /// A record to put in order.
    Data(T),
}

/// Where to resume a partition: the offset of its first record not yet
/// given out (or of the next record when none waits), and its epoch there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneStart {
    /// First offset to consume.
    pub offset: i64,
    /// The partition's epoch just before that offset.
    pub epoch: u64,
}

/// A record given to the merger out of turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The topic has no such partition.
    #[error("partition {partition} is not one of the topic's {partitions}")]
    UnknownPartition {
        /// The partition given.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// Offsets of a partition must come in increasing order.
    #[error("offset {offset} of partition {partition} comes after offset {next} was expected at the earliest")]
    OffsetBehind {
        /// The partition.
        partition: u32,
        /// The offset given.
        offset: i64,
        /// The lowest offset it could take.
        next: i64,
    },
}

/// One partition's state.
#[derive(Debug)]
struct Lane<T> {
    epoch: u64,
    next_offset: i64,
    pending: VecDeque<(MergeKey, T)>,
}

/// The merge of a topic's partitions (see the module docs).
#[derive(Debug)]
pub struct Merger<T> {
    lanes: Vec<Lane<T>>,
    /// Records at or before this key are dropped instead of given out.
    applied_through: Option<MergeKey>,
}

impl<T> Merger<T> {
    /// A merger of `partitions` partitions read from their first offset.
    ///
    /// # Panics
    /// When `partitions` is 0.
    #[must_use]
    pub fn new(partitions: u32) -> Merger<T> {
        assert!(partitions > 0, "a topic has partitions");
        Merger::resume(&vec![LaneStart { offset: 0, epoch: 0 }; partitions as usize], None)
    }

    /// A merger that goes on from `lanes` (what [`Merger::lanes`] gave, or
    /// any earlier such state) and drops the records at or before
    /// `applied_through` (the key of the last record already applied, if
    /// any): nothing already applied is given out again.
    ///
    /// # Panics
    /// When `lanes` is empty or has more than `u32::MAX` partitions.
    #[must_use]
    pub fn resume(lanes: &[LaneStart], applied_through: Option<MergeKey>) -> Merger<T> {
        assert!(!lanes.is_empty() && u32::try_from(lanes.len()).is_ok(), "a topic has 1 to 2^32-1 partitions");
        let lanes = lanes
            .iter()
            .map(|start| Lane { epoch: start.epoch, next_offset: start.offset, pending: VecDeque::new() })
            .collect();
        Merger { lanes, applied_through }
    }

    /// How many partitions it merges.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        u32::try_from(self.lanes.len()).unwrap_or(u32::MAX)
    }

    /// Takes the record at `offset` of `partition`. Offsets of a partition
    /// must increase; gaps are allowed (transaction markers, records that
    /// are not the merger's).
    ///
    /// # Errors
    /// [`MergeError`] for a partition the topic lacks or an offset not past
    /// the last one; nothing changes then.
    pub fn push(&mut self, partition: u32, offset: i64, entry: Entry<T>) -> Result<(), MergeError> {
        let partitions = self.partitions();
        let lane =
            self.lanes.get_mut(partition as usize).ok_or(MergeError::UnknownPartition { partition, partitions })?;
        if offset < lane.next_offset {
            return Err(MergeError::OffsetBehind { partition, offset, next: lane.next_offset });
        }
        lane.next_offset = offset + 1;
        match entry {
            Entry::Tick(epoch) => lane.epoch = lane.epoch.max(epoch),
            Entry::Data(data) => {
                let key = MergeKey { epoch: lane.epoch, partition, offset };
                if self.applied_through.is_none_or(|applied| key > applied) {
                    lane.pending.push_back((key, data));
                }
            }
        }
        Ok(())
    }

    /// The next record in the merged order, once nothing can come before
    /// it any more; `None` while the next one must wait for other
    /// partitions (or none waits).
    pub fn pop(&mut self) -> Option<(MergeKey, T)> {
        let (key, _) = self.lanes.iter().filter_map(|lane| lane.pending.front()).min_by_key(|(key, _)| *key)?;
        let key = *key;
        if !self.released(key) {
            return None;
        }
        let popped = self.lanes.get_mut(key.partition as usize)?.pending.pop_front();
        debug_assert!(popped.as_ref().is_some_and(|(k, _)| *k == key), "the least key is its lane's head");
        debug_assert!(self.applied_through.is_none_or(|applied| key > applied), "applied records are dropped");
        self.applied_through = Some(key);
        popped
    }

    /// Whether no record can still come before `key`: partitions before
    /// its own are past its epoch, those after it at its epoch or past it.
    fn released(&self, key: MergeKey) -> bool {
        self.lanes.iter().enumerate().all(|(partition, lane)| {
            let partition = partition as u64;
            match partition.cmp(&u64::from(key.partition)) {
                std::cmp::Ordering::Less => lane.epoch > key.epoch,
                std::cmp::Ordering::Equal => true,
                std::cmp::Ordering::Greater => lane.epoch >= key.epoch,
            }
        })
    }

    /// Where each partition would resume so that every record not yet
    /// given out comes again (with [`Merger::resume`]). Records given out
    /// must be applied before this is saved.
    #[must_use]
    pub fn lanes(&self) -> Vec<LaneStart> {
        self.lanes
            .iter()
            .map(|lane| match lane.pending.front() {
                Some((key, _)) => LaneStart { offset: key.offset, epoch: key.epoch },
                None => LaneStart { offset: lane.next_offset, epoch: lane.epoch },
            })
            .collect()
    }

    /// Records taken but not yet given out: they wait for other
    /// partitions to move on.
    #[must_use]
    pub fn held(&self) -> usize {
        self.lanes.iter().map(|lane| lane.pending.len()).sum()
    }

    /// The offset of the first record of `partition` taken but not yet
    /// given out, if any: every record before it has been given out.
    #[must_use]
    pub fn first_held(&self, partition: u32) -> Option<i64> {
        self.lanes.get(partition as usize)?.pending.front().map(|(key, _)| key.offset)
    }

    /// The epoch that, ticked into every partition, lets out every record
    /// now waiting: one past the newest epoch of any partition.
    #[must_use]
    pub fn next_epoch(&self) -> u64 {
        self.lanes.iter().map(|lane| lane.epoch).max().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A partition's records, in offset order (offsets 0, 1, 2, ...).
    type Partition = Vec<Entry<u32>>;

    /// The order every node must reach: each data record keyed by its
    /// partition's epoch at it, sorted, and only those nothing can still
    /// precede once every partition is consumed.
    fn reference(partitions: &[Partition]) -> Vec<(MergeKey, u32)> {
        let mut keyed = Vec::new();
        let mut last_epochs = Vec::new();
        for (p, records) in partitions.iter().enumerate() {
            let mut epoch = 0;
            for (offset, entry) in records.iter().enumerate() {
                match entry {
                    Entry::Tick(e) => epoch = epoch.max(*e),
                    Entry::Data(d) => {
                        keyed.push((MergeKey { epoch, partition: p as u32, offset: offset as i64 }, *d));
                    }
                }
            }
            last_epochs.push(epoch);
        }
        keyed.sort_by_key(|(key, _)| *key);
        let released = |key: &MergeKey| {
            last_epochs.iter().enumerate().all(|(q, epoch)| match (q as u32).cmp(&key.partition) {
                std::cmp::Ordering::Less => *epoch > key.epoch,
                std::cmp::Ordering::Equal => true,
                std::cmp::Ordering::Greater => *epoch >= key.epoch,
            })
        };
        // Given out in order, so the first record held back holds back all after it.
        keyed.into_iter().take_while(|(key, _)| released(key)).collect()
    }

    fn partitions() -> impl Strategy<Value = Vec<Partition>> {
        let entry = prop_oneof![3 => any::<u32>().prop_map(Entry::Data), 1 => (0u64..6).prop_map(Entry::Tick)];
        proptest::collection::vec(proptest::collection::vec(entry, 0..12), 1..5)
    }

    /// Feeds the records in the order `schedule` picks partitions (each
    /// pick takes that partition's next record), popping after each push;
    /// then, when `finish`, the rest of every partition.
    fn run(
        merger: &mut Merger<u32>,
        partitions: &[Partition],
        cursors: &mut [usize],
        (schedule, finish): (&[usize], bool),
        out: &mut Vec<(MergeKey, u32)>,
    ) {
        let rest = if finish { partitions.len() * 16 } else { 0 };
        let mut picks = schedule.iter().copied().chain(0..rest);
        while cursors.iter().zip(partitions).any(|(c, p)| *c < p.len()) {
            let Some(pick) = picks.next() else { break };
            let p = pick % partitions.len();
            let (Some(cursor), Some(records)) = (cursors.get_mut(p), partitions.get(p)) else { continue };
            if let Some(entry) = records.get(*cursor) {
                merger.push(p as u32, *cursor as i64, entry.clone()).expect("in order");
                *cursor += 1;
                while let Some(next) = merger.pop() {
                    out.push(next);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_arrival_order_gives_the_same_merged_order(
            partitions in partitions(),
            first in proptest::collection::vec(0usize..8, 0..60),
            second in proptest::collection::vec(0usize..8, 0..60),
        ) {
            let want = reference(&partitions);
            for schedule in [&first, &second] {
                let mut merger = Merger::new(partitions.len() as u32);
                let (mut cursors, mut out) = (vec![0; partitions.len()], Vec::new());
                run(&mut merger, &partitions, &mut cursors, (schedule, true), &mut out);
                prop_assert_eq!(&out, &want);
            }
        }

        #[test]
        fn a_resumed_merger_gives_out_the_rest_and_nothing_twice(
            partitions in partitions(),
            schedule in proptest::collection::vec(0usize..8, 0..60),
            saved in 0usize..40,
            stop in 0usize..40,
        ) {
            let want = reference(&partitions);
            let mut merger = Merger::new(partitions.len() as u32);
            let (mut cursors, mut out) = (vec![0; partitions.len()], Vec::new());
            let (saved, stop) = (saved.min(stop).min(schedule.len()), stop.min(schedule.len()));
            run(&mut merger, &partitions, &mut cursors, (schedule.get(..saved).unwrap_or_default(), false), &mut out);
            // A restart from lanes saved before the last records were
            // applied: the key of the last applied record skips them.
            let lanes = merger.lanes();
            run(&mut merger, &partitions, &mut cursors, (schedule.get(saved..stop).unwrap_or_default(), false), &mut out);
            let applied = out.last().map(|(key, _)| *key);
            let mut resumed = Merger::resume(&lanes, applied);
            let mut cursors: Vec<usize> = lanes.iter().map(|l| l.offset as usize).collect();
            run(&mut resumed, &partitions, &mut cursors, (&schedule, true), &mut out);
            prop_assert_eq!(&out, &want);
        }
    }

    #[test]
    fn one_partition_needs_no_ticks() {
        let mut merger = Merger::new(1);
        merger.push(0, 0, Entry::Data("a")).expect("in order");
        assert_eq!(merger.pop(), Some((MergeKey { epoch: 0, partition: 0, offset: 0 }, "a")));
    }

    #[test]
    fn a_record_waits_for_the_partitions_that_could_still_precede_it() {
        let mut merger = Merger::new(2);
        merger.push(1, 0, Entry::Data("late")).expect("in order");
        assert_eq!(merger.pop(), None, "partition 0 could still write epoch 0");
        assert_eq!(merger.held(), 1);
        assert_eq!((merger.first_held(0), merger.first_held(1)), (None, Some(0)));
        merger.push(0, 0, Entry::Data("early")).expect("in order");
        assert_eq!(merger.pop().map(|(_, d)| d), Some("early"), "partition 0 comes first in an epoch");
        assert_eq!(merger.pop(), None, "partition 0 is still in epoch 0");
        let next = merger.next_epoch();
        merger.push(0, 1, Entry::Tick(next)).expect("in order");
        assert_eq!(merger.pop().map(|(_, d)| d), Some("late"));
        assert_eq!(merger.first_held(1), None, "everything given out");
        assert_eq!(merger.lanes(), vec![LaneStart { offset: 2, epoch: 1 }, LaneStart { offset: 1, epoch: 0 }]);
    }

    #[test]
    fn records_out_of_turn_are_refused_and_change_nothing() {
        let mut merger = Merger::new(2);
        merger.push(0, 5, Entry::Data(1)).expect("gaps are allowed");
        assert_eq!(
            merger.push(0, 5, Entry::Data(2)),
            Err(MergeError::OffsetBehind { partition: 0, offset: 5, next: 6 })
        );
        assert_eq!(
            merger.push(2, 0, Entry::Data(3)),
            Err(MergeError::UnknownPartition { partition: 2, partitions: 2 })
        );
        assert_eq!(merger.lanes(), vec![LaneStart { offset: 5, epoch: 0 }, LaneStart { offset: 0, epoch: 0 }]);
    }
}
