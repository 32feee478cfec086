//! Record batches answered lately, kept for the fetches that ask for the
//! same thing: consumers of one topic at one offset (a fleet woken by the
//! same commit, or catching up side by side) get one read of the log and
//! one encoding between them, as Kafka's consumers share its page cache.
//!
//! What it promises:
//! - a batch is handed out only for the same topic, partition, offset,
//!   byte limit and first-record rule it was made for, so it is one a
//!   fresh read could have answered: a read that stopped at a limit (the
//!   same read gives the same batch while the log holds those events), for
//!   [`KEPT_WHOLE`] after it was made (so an event a scavenge removed may
//!   still go out within that second, as to a fetch a second earlier);
//!   a read that went to the end of the topic
//!   while the high watermark has not moved since, or for
//!   [`KEPT_AT_END`] after it was made (an answer a few events short of
//!   the end, as if read a moment earlier: the consumer asks again from
//!   its end);
//! - it holds at most [`Batches::new`]'s `bytes_max` of batches, the
//!   oldest going first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::topic::Topic;

/// How long a batch that stopped at a limit is handed out.
pub const KEPT_WHOLE: Duration = Duration::from_secs(1);
/// How long a batch that reached the end of its topic is handed out after
/// the high watermark moved.
pub const KEPT_AT_END: Duration = Duration::from_millis(2);

/// What a fetch of one partition asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asked {
    /// The topic.
    pub topic: Topic,
    /// Its partition.
    pub partition: i32,
    /// The fetch offset.
    pub offset: i64,
    /// Record bytes the answer may hold.
    pub limit: usize,
    /// Whether the first record may pass the limit.
    pub first: bool,
}

/// A batch as a read made it.
#[derive(Debug, Clone)]
pub struct Made {
    /// The encoded record batch.
    pub records: Bytes,
    /// The high watermark when it was read.
    pub watermark: i64,
    /// Whether the read went to the end of the topic (else it stopped at
    /// a limit).
    pub at_end: bool,
}

/// Batches lately made, by what was asked.
#[derive(Debug)]
pub struct Batches {
    kept: Mutex<Kept>,
    bytes_max: usize,
}

#[derive(Debug, Default)]
struct Kept {
    by_asked: HashMap<Asked, (Made, Instant)>,
    /// In the order they were kept, to let the oldest go.
    order: VecDeque<(Asked, Instant)>,
    bytes: usize,
}

impl Batches {
    /// An empty cache keeping at most `bytes_max` bytes of batches.
    #[must_use]
    pub fn new(bytes_max: usize) -> Batches {
        Batches { kept: Mutex::new(Kept::default()), bytes_max }
    }

    /// The batch made for `asked`, when it is still one a read now could
    /// give (see the module's promise), the high watermark being
    /// `watermark`.
    pub fn get(&self, asked: &Asked, watermark: i64) -> Option<Bytes> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (made, at) = kept.by_asked.get(asked)?;
        let age = at.elapsed();
        let current = if made.at_end { made.watermark == watermark || age < KEPT_AT_END } else { age < KEPT_WHOLE };
        current.then(|| made.records.clone())
    }

    /// Keeps `made` for `asked`, in place of what was kept for it; lets
    /// the oldest go past the budget. A batch over a quarter of the
    /// budget is not kept.
    pub fn keep(&self, asked: Asked, made: Made) {
        let size = made.records.len();
        if size > self.bytes_max / 4 {
            return;
        }
        let now = Instant::now();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((old, _)) = kept.by_asked.insert(asked.clone(), (made, now)) {
            kept.bytes -= old.records.len();
        }
        kept.bytes += size;
        kept.order.push_back((asked, now));
        while kept.bytes > self.bytes_max
            && let Some((oldest, at)) = kept.order.pop_front()
        {
            // An entry kept again since has a later time: only its last
            // keeping takes it out.
            if kept.by_asked.get(&oldest).is_some_and(|(_, kept_at)| *kept_at == at)
                && let Some((gone, _)) = kept.by_asked.remove(&oldest)
            {
                kept.bytes -= gone.records.len();
            }
        }
        // The order may list entries replaced since; it stays within a
        // few times the entries kept.
        if kept.order.len() > 4 * kept.by_asked.len() + 64 {
            let Kept { by_asked, order, .. } = &mut *kept;
            order.retain(|(asked, at)| by_asked.get(asked).is_some_and(|(_, kept_at)| kept_at == at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(offset: i64) -> Asked {
        Asked { topic: Topic::All, partition: 0, offset, limit: 1000, first: true }
    }

    fn made(bytes: usize, watermark: i64, at_end: bool) -> Made {
        Made { records: Bytes::from(vec![7; bytes]), watermark, at_end }
    }

    #[test]
    fn a_batch_goes_only_to_the_same_question_while_a_read_could_still_give_it() {
        let batches = Batches::new(10_000);
        batches.keep(asked(5), made(100, 20, false));
        assert_eq!(batches.get(&asked(5), 90).map(|b| b.len()), Some(100), "stopped at a limit: watermark aside");
        assert!(batches.get(&asked(6), 20).is_none(), "another offset");
        let mut other_limit = asked(5);
        other_limit.limit = 2000;
        assert!(batches.get(&other_limit, 20).is_none(), "another limit");
        let mut not_first = asked(5);
        not_first.first = false;
        assert!(batches.get(&not_first, 20).is_none(), "another first-record rule");

        batches.keep(asked(30), made(50, 40, true));
        assert!(batches.get(&asked(30), 40).is_some(), "at the end, watermark unmoved");
        std::thread::sleep(KEPT_AT_END + Duration::from_millis(5));
        assert!(batches.get(&asked(30), 40).is_some(), "watermark unmoved: still what a read gives");
        assert!(batches.get(&asked(30), 41).is_none(), "the log grew since, and a moment passed");
        assert!(batches.get(&asked(5), 41).is_some(), "a batch that stopped at a limit stays");
    }

    #[test]
    fn the_oldest_go_past_the_budget_and_large_ones_are_not_kept() {
        let batches = Batches::new(1000);
        batches.keep(asked(1), made(300, 10, false));
        batches.keep(asked(2), made(200, 10, false));
        batches.keep(asked(1), made(240, 10, false));
        batches.keep(asked(3), made(240, 10, false));
        batches.keep(asked(4), made(240, 10, false));
        batches.keep(asked(6), made(200, 10, false));
        assert!(batches.get(&asked(2), 10).is_none(), "the oldest went");
        for offset in [1, 3, 4] {
            assert_eq!(batches.get(&asked(offset), 10).map(|b| b.len()), Some(240), "offset {offset}");
        }
        assert!(batches.get(&asked(6), 10).is_some(), "the newest stays");
        batches.keep(asked(5), made(251, 10, false));
        assert!(batches.get(&asked(5), 10).is_none(), "over a quarter of the budget");
        let kept = batches.kept.lock().expect("lock");
        assert_eq!(kept.bytes, kept.by_asked.values().map(|(m, _)| m.records.len()).sum::<usize>());
        assert!(kept.bytes <= 1000);
    }
}
