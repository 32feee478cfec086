//! One benchmark writer: it owns a disjoint share of the streams (streams
//! `w`, `w + writers`, `w + 2 * writers`, ...), remembers the last revision
//! of each, and so can state the exact expected revision of every append
//! (`NoStream` for a stream it has not written yet). A conflict therefore
//! means the store lost track of a revision; it is counted, the writer
//! adopts the actual revision, and the run reports it as a failure.

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_core::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Revision, StreamName};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::payload::event;

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
            event_type: EventType::new("Deposited")?,
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
        self.slot = self.rng.random_range(0..self.streams.len());
        let number = self.streams.get(self.slot).copied().unwrap_or_default();
        let stream = StreamName::new(format!("account-{number}"))?;
        let expected = self.expected();
        let events = (0..self.events_per_append).map(|n| event(&self.event_type, n)).collect();
        Ok(AppendRequest::to_stream(stream, expected, events))
    }

    fn expected(&self) -> ExpectedRevision {
        match self.revisions.get(self.slot).copied().flatten() {
            Some(revision) => ExpectedRevision::Exact(revision),
            None => ExpectedRevision::NoStream,
        }
    }

    /// Takes in the outcome of the last request: a written append moves
    /// the stream to its new revision; a conflict is counted and the
    /// stream's actual revision adopted.
    ///
    /// # Errors
    /// An outcome that cannot happen to a fresh append (an idempotent
    /// repeat) or a written append without a stream result.
    pub fn acknowledge(&mut self, outcome: AppendOutcome) -> anyhow::Result<()> {
        let revision = match outcome {
            AppendOutcome::Written(result) => {
                self.appends += 1;
                let stream = result.streams.first().context("a written append reported no stream")?;
                Some(stream.last_revision)
            }
            AppendOutcome::Conflict(conflict) => {
                self.conflicts += 1;
                conflict.streams.first().and_then(|s| s.actual)
            }
            AppendOutcome::AlreadyWritten(result) => {
                anyhow::bail!("fresh event ids were reported as already written at {}", result.first_position)
            }
        };
        if let Some(slot) = self.revisions.get_mut(self.slot) {
            *slot = revision;
        }
        Ok(())
    }
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
    fn a_new_stream_is_expected_not_to_exist() {
        let mut writer = Writer::new(0, 1, 10, 2).expect("valid");
        let request = writer.next_request().expect("valid");
        assert_eq!(request.writes[0].expected, ExpectedRevision::NoStream);
        assert_eq!(request.event_count(), 2);
    }
}
