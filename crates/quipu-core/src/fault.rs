//! Fault injection for tests: make the Nth log write, fdatasync or
//! segment file creation fail, as a full disk, a dying device or a
//! process out of file descriptors would, to pin the fail-stop contract
//! and what each failed append is told.
//! Production code carries an empty plan and pays one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which log operation to fail. Counts start at 1; 0 means never.
#[derive(Debug, Default)]
pub struct FaultPlan {
    fail_write_number: AtomicU64,
    fail_sync_number: AtomicU64,
    fail_create_number: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    creates: AtomicU64,
}

impl FaultPlan {
    /// A plan that fails the `number`th write (1-based) of the log.
    #[must_use]
    pub fn fail_write(number: u64) -> FaultPlan {
        FaultPlan { fail_write_number: AtomicU64::new(number), ..FaultPlan::default() }
    }

    /// A plan that fails the `number`th fdatasync (1-based) of the log.
    #[must_use]
    pub fn fail_sync(number: u64) -> FaultPlan {
        FaultPlan { fail_sync_number: AtomicU64::new(number), ..FaultPlan::default() }
    }

    /// A plan that fails the `number`th creation (1-based) of a segment
    /// file for appends (the store's first segment is the first).
    #[must_use]
    pub fn fail_create(number: u64) -> FaultPlan {
        FaultPlan { fail_create_number: AtomicU64::new(number), ..FaultPlan::default() }
    }

    /// Counts a write; an error when this is the one to fail.
    pub(crate) fn on_write(&self) -> std::io::Result<()> {
        let number = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        Self::check(number, &self.fail_write_number, "write")
    }

    /// Counts an fdatasync; an error when this is the one to fail.
    pub(crate) fn on_sync(&self) -> std::io::Result<()> {
        let number = self.syncs.fetch_add(1, Ordering::Relaxed) + 1;
        Self::check(number, &self.fail_sync_number, "fdatasync")
    }

    /// Counts a segment file's creation; an error when this is the one to
    /// fail.
    pub(crate) fn on_create(&self) -> std::io::Result<()> {
        let number = self.creates.fetch_add(1, Ordering::Relaxed) + 1;
        Self::check(number, &self.fail_create_number, "segment creation")
    }

    fn check(number: u64, fail_at: &AtomicU64, what: &str) -> std::io::Result<()> {
        if number == fail_at.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(format!("injected failure of {what} number {number}")));
        }
        Ok(())
    }
}
