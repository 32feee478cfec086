//! The online scavenge, as the server runs it: one at a time, on its own
//! thread, removing from the log every event stream lifecycle hides
//! (tombstoned streams, soft deletes, `truncate_before`, `max_count`,
//! `max_age_s`), while appends and reads go on.
//!
//! What it promises:
//! - What goes is fixed when the scavenge starts: each stream with
//!   metadata keeps its events from its first visible revision then (all
//!   of them go for a tombstoned stream). Metadata changed while it runs
//!   applies to the next scavenge.
//! - Only closed segments are rewritten (see `quipu_core::Store::scavenge`):
//!   events in the segment appends are writing stay until a later run.
//! - Progress is readable at any time; a stop ends the scavenge after the
//!   segment in hand, keeping what is done.
//! - A crash at any point loses no live event; the next open finishes or
//!   undoes the segment in hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use quipu_core::{Revision, ScavengeProgress, Store, StreamName};
use serde::Serialize;

use super::Lifecycle;
use crate::clock::now_us;
use crate::{ApiError, ErrorCode};

/// Where a scavenge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScavengeState {
    /// Going through the segments.
    Running,
    /// Went through every closed segment.
    Done,
    /// Stopped on request after a segment; what is done stays done.
    Stopped,
    /// Ended with an error (see the message); what is done stays done.
    Failed,
}

/// A scavenge's state and progress. As JSON (`GET /v1/scavenge`), the
/// progress counts sit beside the other fields: `{started_at_us,
/// finished_at_us, state, streams, segments_total, segments_done,
/// segments_rewritten, bytes_total, bytes_scanned, bytes_reclaimed,
/// events_removed, bytes_per_second, message}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScavengeStatus {
    /// When it started, µs since the Unix epoch; names the scavenge.
    pub started_at_us: u64,
    /// When it ended; `None` while it runs.
    pub finished_at_us: Option<u64>,
    /// Where it is.
    pub state: ScavengeState,
    /// Streams whose events it may remove.
    pub streams: usize,
    /// Segments, bytes and events so far.
    pub progress: ScavengeProgress,
    /// Bytes read per second since the start.
    pub bytes_per_second: f64,
    /// Why it failed; empty otherwise.
    pub message: String,
}

impl ScavengeStatus {
    fn starting() -> ScavengeStatus {
        ScavengeStatus {
            started_at_us: now_us(),
            finished_at_us: None,
            state: ScavengeState::Running,
            streams: 0,
            progress: ScavengeProgress::default(),
            bytes_per_second: 0.0,
            message: String::new(),
        }
    }

    fn record(&mut self, progress: &ScavengeProgress, started: Instant) {
        self.progress = *progress;
        let seconds = started.elapsed().as_secs_f64();
        self.bytes_per_second = if seconds > 0.0 { progress.bytes_scanned as f64 / seconds } else { 0.0 };
    }
}

impl Serialize for ScavengeStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = &self.progress;
        serde_json::json!({
            "started_at_us": self.started_at_us,
            "finished_at_us": self.finished_at_us,
            "state": self.state,
            "streams": self.streams,
            "segments_total": p.segments_total,
            "segments_done": p.segments_done,
            "segments_rewritten": p.segments_rewritten,
            "bytes_total": p.bytes_total,
            "bytes_scanned": p.bytes_scanned,
            "bytes_reclaimed": p.bytes_reclaimed,
            "events_removed": p.events_removed,
            "bytes_per_second": self.bytes_per_second,
            "message": self.message,
        })
        .serialize(serializer)
    }
}

/// Runs scavenges and keeps the last one's status.
pub struct Scavenger {
    store: Arc<Store>,
    lifecycle: Arc<Lifecycle>,
    status: Arc<Mutex<Option<ScavengeStatus>>>,
    stop: Arc<AtomicBool>,
}

impl Scavenger {
    /// A scavenger of `store` that removes what `lifecycle` hides.
    #[must_use]
    pub fn new(store: Arc<Store>, lifecycle: Arc<Lifecycle>) -> Scavenger {
        Scavenger { store, lifecycle, status: Arc::default(), stop: Arc::default() }
    }

    /// Starts a scavenge on its own thread and answers its first status.
    ///
    /// # Errors
    /// 409 `scavenge_running` when one runs; 500 when the thread cannot
    /// start.
    pub fn start(&self) -> Result<ScavengeStatus, ApiError> {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.as_ref().is_some_and(|s| s.state == ScavengeState::Running) {
            return Err(running());
        }
        let first = ScavengeStatus::starting();
        *status = Some(first.clone());
        self.stop.store(false, Ordering::SeqCst);
        let run = Run {
            store: Arc::clone(&self.store),
            lifecycle: Arc::clone(&self.lifecycle),
            status: Arc::clone(&self.status),
            stop: Arc::clone(&self.stop),
        };
        if let Err(error) = std::thread::Builder::new().name("quipu-scavenge".into()).spawn(move || run.run()) {
            *status = None;
            return Err(ApiError::new(ErrorCode::Internal, format!("cannot start the scavenge thread: {error}")));
        }
        Ok(first)
    }

    /// The running or last scavenge.
    ///
    /// # Errors
    /// 404 `no_scavenge` when none ran since the server started.
    pub fn status(&self) -> Result<ScavengeStatus, ApiError> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| ApiError::new(ErrorCode::NoScavenge, "no scavenge ran since the server started"))
    }

    /// Asks the running scavenge to stop after the segment in hand.
    ///
    /// # Errors
    /// 404 `no_scavenge`, 409 `scavenge_not_running` when the last one
    /// has ended.
    pub fn stop(&self) -> Result<ScavengeStatus, ApiError> {
        let status = self.status()?;
        if status.state != ScavengeState::Running {
            return Err(ApiError::new(
                ErrorCode::ScavengeNotRunning,
                format!("the last scavenge has ended ({:?})", status.state).to_lowercase(),
            ));
        }
        self.stop.store(true, Ordering::SeqCst);
        Ok(status)
    }

    /// Stops a running scavenge (on server shutdown).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn running() -> ApiError {
    ApiError::new(ErrorCode::ScavengeRunning, "a scavenge is already running; see GET /v1/scavenge")
}

/// One scavenge, on its thread.
struct Run {
    store: Arc<Store>,
    lifecycle: Arc<Lifecycle>,
    status: Arc<Mutex<Option<ScavengeStatus>>>,
    stop: Arc<AtomicBool>,
}

impl Run {
    fn run(self) {
        let started = Instant::now();
        let outcome = self.lifecycle.scavenge_cutoffs().and_then(|cutoffs| {
            self.update(|s| s.streams = cutoffs.len());
            let doomed = |stream: &StreamName, revision: Revision, _recorded_at_us: u64| {
                cutoffs.get(stream.as_str()).is_some_and(|&keep_from| revision.0 < keep_from)
            };
            let mut report = |progress: &ScavengeProgress| self.update(|s| s.record(progress, started));
            let stop = || self.stop.load(Ordering::SeqCst);
            Ok(self.store.scavenge(&doomed, &mut report, &stop)?)
        });
        let stopped = self.stop.load(Ordering::SeqCst);
        self.update(|s| {
            s.finished_at_us = Some(now_us());
            match &outcome {
                Ok(progress) => {
                    s.record(progress, started);
                    let finished = progress.segments_done == progress.segments_total;
                    s.state = if stopped && !finished { ScavengeState::Stopped } else { ScavengeState::Done };
                }
                Err(error) => {
                    s.state = ScavengeState::Failed;
                    s.message = error.message.clone();
                }
            }
        });
        match outcome {
            Ok(progress) => tracing::info!(?progress, "scavenge ended"),
            Err(error) => tracing::error!(message = %error.message, "scavenge failed"),
        }
    }

    fn update(&self, change: impl FnOnce(&mut ScavengeStatus)) {
        if let Some(status) = self.status.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            change(status);
        }
    }
}

impl Lifecycle {
    /// For each stream with metadata that hides events, the first revision
    /// a scavenge keeps now (`u64::MAX` for a tombstoned stream).
    ///
    /// # Errors
    /// Read errors.
    pub fn scavenge_cutoffs(&self) -> Result<HashMap<String, u64>, ApiError> {
        let streams = self.folded.state().metadata.clone();
        let mut cutoffs = HashMap::new();
        for (stream, metadata) in streams {
            let Ok(name) = StreamName::new(&stream) else { continue };
            let keep_from = if metadata.tombstoned { Some(u64::MAX) } else { self.first_visible(&name, &metadata)? };
            if let Some(keep_from) = keep_from {
                cutoffs.insert(stream, keep_from);
            }
        }
        Ok(cutoffs)
    }
}
