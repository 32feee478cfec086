//! [`FoldedLog`]: a registry's memory kept as the fold of its
//! [`RecordLog`], the one way it changes, whoever wrote the record: read
//! at open, appended by this node, or appended by another writer (the
//! other nodes of a cluster, whose records reach this node's store) and
//! read by [`FoldedLog::refresh`].
//!
//! What it promises:
//! - The state is the fold, in log order, of the records up to the
//!   revision the log stands at. Open folds what is there; an append
//!   folds the record it wrote once that is durable; a refresh folds what
//!   others wrote. No second code path changes the state, so none can
//!   disagree with a restart.
//! - Changes are serialized: a [`Writer`] holds the log from its own
//!   refresh until it is dropped, and refreshes wait for that lock, so a
//!   writer validates against the newest state, its append expects the
//!   revision it last read, and no record is folded in between.
//! - A refresh that meets a record that does not decode changes nothing
//!   (see [`RecordLog::read_new`]); the next one meets it again.
//!
//! Readers take the state under a short read lock (never across an
//! await); a batch of records is folded under one write lock, so readers
//! see the state before it or after it.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use quipu_core::Store;
use tokio::sync::{Mutex, MutexGuard};

use crate::ApiError;
use crate::record_log::{Record, RecordLog};

/// A registry's state, built by folding its records in log order.
pub trait Fold<R> {
    /// Takes `record`, the next one of the log, into the state. It cannot
    /// fail: whatever a record must satisfy is checked as it decodes.
    fn fold(&mut self, record: R);
}

/// A [`RecordLog`] and the state folded from it.
pub struct FoldedLog<R, S> {
    log: Mutex<RecordLog<R>>,
    state: RwLock<S>,
}

impl<R: Record, S: Fold<R> + Default> FoldedLog<R, S> {
    /// Opens the system stream `stream` of `store` and folds every record
    /// written so far into the default state.
    ///
    /// # Errors
    /// As [`RecordLog::open`].
    pub fn open(store: Arc<Store>, stream: &str) -> Result<FoldedLog<R, S>, ApiError> {
        let (log, records) = RecordLog::open(store, stream)?;
        let mut state = S::default();
        for record in records {
            state.fold(record);
        }
        Ok(FoldedLog { log: Mutex::new(log), state: RwLock::new(state) })
    }
}

impl<R: Record, S: Fold<R>> FoldedLog<R, S> {
    /// The state now. Hold it briefly: folds wait for it.
    pub fn state(&self) -> RwLockReadGuard<'_, S> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the records other writers appended since the log's last
    /// revision; waits for a [`Writer`] in hand to finish first.
    ///
    /// # Errors
    /// As [`RecordLog::read_new`] (the state is then unchanged).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let mut log = self.log.lock().await;
        fold_new(&mut log, &self.state)
    }

    /// Takes the log for one change, refreshed first, so the change is
    /// checked against the newest state and appends at the newest
    /// revision.
    ///
    /// # Errors
    /// As [`FoldedLog::refresh`].
    pub async fn writer(&self) -> Result<Writer<'_, R, S>, ApiError> {
        let mut log = self.log.lock().await;
        fold_new(&mut log, &self.state)?;
        Ok(Writer { log, state: &self.state })
    }
}

/// Reads the records after the log's revision and folds them, all under
/// one write lock.
fn fold_new<R: Record, S: Fold<R>>(log: &mut RecordLog<R>, state: &RwLock<S>) -> Result<(), ApiError> {
    let records = log.read_new()?;
    if records.is_empty() {
        return Ok(());
    }
    let mut state = state.write().unwrap_or_else(PoisonError::into_inner);
    for record in records {
        state.fold(record);
    }
    Ok(())
}

/// The log of a [`FoldedLog`], held for one change.
pub struct Writer<'a, R, S> {
    log: MutexGuard<'a, RecordLog<R>>,
    state: &'a RwLock<S>,
}

impl<R: Record, S: Fold<R>> Writer<'_, R, S> {
    /// The state now (nobody else folds while the writer is held).
    pub fn state(&self) -> RwLockReadGuard<'_, S> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `record` durably at the revision the log last saw, then
    /// folds it.
    ///
    /// # Errors
    /// As [`RecordLog::append`]; the state is then unchanged.
    pub async fn append(&mut self, record: R) -> Result<(), ApiError> {
        self.log.append(&record).await?;
        self.state.write().unwrap_or_else(PoisonError::into_inner).fold(record);
        Ok(())
    }
}
