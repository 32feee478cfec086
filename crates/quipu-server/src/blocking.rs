//! Store reads from async handlers: they may block on the disk, so they
//! must not hold a runtime worker's other tasks hostage, yet most are
//! served from the page cache in microseconds, where handing them to
//! another thread and back costs more than the read.
//!
//! [`read`] runs the read on the calling worker thread after handing
//! that worker's queue to another thread ([`tokio::task::block_in_place`]),
//! so the caller waits for no thread wake-up. On a current-thread runtime
//! (where that is impossible) it goes to the blocking pool.
//!
//! Each read that runs this way can cost the runtime a thread, so at most
//! [`READS_MAX`] run at once; the others wait for a turn without a thread
//! (a hundred subscribers catching up at once no longer make a hundred
//! threads).

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

/// Reads that may block at once, across the server.
pub const READS_MAX: usize = 8;

/// Turns to run a read.
static TURNS: Semaphore = Semaphore::const_new(READS_MAX);

/// Why a read did not give its result: its task panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("read task failed: {0}")]
pub struct ReadTaskFailed(String);

/// Runs the blocking `read` without stalling other tasks, once a turn is
/// free, and returns its result.
///
/// # Errors
/// [`ReadTaskFailed`] when the read ran on the blocking pool and
/// panicked there (on a worker thread, a panic unwinds to the caller).
pub async fn read<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Result<T, ReadTaskFailed> {
    let _turn = TURNS.acquire().await.map_err(|e| ReadTaskFailed(e.to_string()))?;
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(read)),
        _ => tokio::task::spawn_blocking(read).await.map_err(|e| ReadTaskFailed(e.to_string())),
    }
}
