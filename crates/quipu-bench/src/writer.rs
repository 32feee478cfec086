//! One benchmark writer: it owns a disjoint share of the streams (streams
//! `w`, `w + writers`, `w + 2 * writers`, ...), remembers the last revision
//! of each, and so can state the exact expected revision of every append
//! (`NoStream` for a stream it has not written yet). A conflict therefore
//! means the store lost track of a revision; it is counted, the writer
//! adopts the actual revision, and the run reports it as a failure. The
//! same writer drives the store in-process (`next_request`, `acknowledge`)
//! or through the server (`next_stream`, `take`), so both write alike.

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_core::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Revision, StreamName};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::payload::{EVENT_TYPE, event};

/// A writer's streams, their revisions and its tallies.
pub struct Writer {
    streams: Vec<u64>,
    revisions: Vec<Option<Revision>>,
    /// The slot of the last request made.
    slot: usize,
    rng: SmallRng,
    event_type: EventType,
    events_per_append: u64,
    /// Appends written.
    pub appends: u64,
    /// Appends refused by a concurrency conflict (must stay 0).
    pub conflicts: u64,
}

impl Writer {
    /// Writer `index` of `writers`, over streams `0..streams`, appending
    /// `events_per_append` events at a time.
    ///
    /// # Errors
    /// When there are fewer streams than `index + 1`, so the writer would
    /// own none.
    pub fn new(index: u64, writers: u64, streams: u64, events_per_append: u64) -> anyhow::Result<Writer> {
        let owned: Vec<u64> = (index..streams).step_by(writers.max(1) as usize).collect();
        anyhow::ensure!(!owned.is_empty(), "writer {index} of {writers} owns no stream of {streams}");
        Ok(Writer {
            revisions: vec![None; owned.len()],
            streams: owned,
            slot: 0,
            rng: SmallRng::seed_from_u64(index),
            event_type: EventType::new(EVENT_TYPE)?,
            events_per_append,
            appends: 0,
            conflicts: 0,
        })
    }

    /// The next append: to a random stream of this writer's share, with
    /// the exact expected revision.
    ///
    /// # Errors
    /// Only if a generated stream name were invalid.
    pub fn next_request(&mut self) -> anyhow::Result<AppendRequest> {
        let (stream, last) = self.next_stream();
        let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let events = (0..self.events_per_append).map(|n| event(&self.event_type, n)).collect();
        Ok(AppendRequest::to_stream(StreamName::new(stream)?, expected, events))
    }

    /// The stream of the next append, picked at random from this writer's
    /// share, and its last revision (`None`: not written yet), which is
    /// the exact expected revision of the append.
    pub fn next_stream(&mut self) -> (String, Option<Revision>) {
        self.slot = self.rng.random_range(0..self.streams.len());
        let number = self.streams.get(self.slot).copied().unwrap_or_default();
        let last = self.revisions.get(self.slot).copied().flatten();
        (format!("account-{number}"), last)
    }

    /// Events in each append.
    #[must_use]
    pub fn events_per_append(&self) -> u64 {
        self.events_per_append
    }

    /// Takes in the outcome of the last request: a written append moves
    /// the stream to its new revision; a conflict is counted and the
    /// stream's actual revision adopted.
    ///
    /// # Errors
    /// An outcome that cannot happen to a fresh append (an idempotent
    /// repeat) or a written append without a stream result.
    pub fn acknowledge(&mut self, outcome: AppendOutcome) -> anyhow::Result<()> {
        let ack = match outcome {
            AppendOutcome::Written(result) => {
                let stream = result.streams.first().context("a written append reported no stream")?;
                Ack::Written(stream.last_revision)
            }
            AppendOutcome::Conflict(conflict) => Ack::Conflict(conflict.streams.first().and_then(|s| s.actual)),
            AppendOutcome::AlreadyWritten(result) => {
                anyhow::bail!("fresh event ids were reported as already written at {}", result.first_position)
            }
        };
        self.take(ack);
        Ok(())
    }

    /// Takes in the answer to the last append, however it travelled.
    pub fn take(&mut self, ack: Ack) {
        let revision = match ack {
            Ack::Written(last) => {
                self.appends += 1;
                Some(last)
            }
            Ack::Conflict(actual) => {
                self.conflicts += 1;
                actual
            }
        };
        if let Some(slot) = self.revisions.get_mut(self.slot) {
            *slot = revision;
        }
    }
}

/// The answer to one append, as a writer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Written; the stream's new last revision.
    Written(Revision),
    /// Refused by the expected revision; the stream's actual last
    /// revision (`None`: it has no events).
    Conflict(Option<Revision>),
}

/// What the writers of one timed run did together.
pub struct Tally {
    /// Appends written.
    pub appends: u64,
    /// Appends refused by a conflict.
    pub conflicts: u64,
    /// Latency of every append, submit to acknowledgement, microseconds.
    pub latency: Histogram<u64>,
    /// Wall time from the first submit to the last acknowledgement.
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_own_disjoint_streams() {
        let mut seen = std::collections::HashSet::new();
        for w in 0..8 {
            let writer = Writer::new(w, 8, 100, 1).expect("valid");
            for stream in writer.streams {
                assert!(seen.insert(stream), "stream {stream} has two owners");
            }
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn a_conflict_is_counted_and_adopts_the_actual_revision() {
        let mut writer = Writer::new(0, 1, 1, 1).expect("valid");
        writer.next_stream();
        writer.take(Ack::Written(Revision(0)));
        assert_eq!(writer.next_stream(), ("account-0".to_string(), Some(Revision(0))));
        writer.take(Ack::Conflict(Some(Revision(3))));
        assert_eq!(writer.next_stream().1, Some(Revision(3)));
        assert_eq!((writer.appends, writer.conflicts), (1, 1));
    }

    #[test]
    fn a_new_stream_is_expected_not_to_exist() {
        let mut writer = Writer::new(0, 1, 10, 2).expect("valid");
        let request = writer.next_request().expect("valid");
        assert_eq!(request.writes[0].expected, ExpectedRevision::NoStream);
        assert_eq!(request.event_count(), 2);
    }
}
