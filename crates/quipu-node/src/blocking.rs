//! Store reads from async handlers: they may block on the disk, so they
//! must not hold a runtime worker's other tasks hostage.
//!
//! Two ways, both bounded in threads:
//! - [`follow`], for reads that follow the log (subscriptions behind the
//!   tail, the tail itself, Kafka fetches): handed to a fixed pool of
//!   [`READERS`] threads, the result awaited without a thread. However
//!   many subscribers and consumers read at once, these threads and no
//!   more read for them; the rest queue.
//! - [`read`], for a client waiting on one answer (a stream load, a
//!   page): run on the calling worker after handing its queue to another
//!   thread ([`tokio::task::block_in_place`]), so the caller waits for no
//!   thread wake-up, at most [`IN_PLACE_MAX`] at once; past that, on the
//!   pool like [`follow`].
//!
//! A `block_in_place` for every read, or a blocking-pool task, made the
//! runtime start threads faster than it reused them under a few hundred
//! subscribers: a hundred threads, each keeping its own allocator caches
//! (`quipu-bench subscribers`, docs/benchmarks.md).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

/// Threads of the reader pool, across the server.
pub const READERS: usize = 4;
/// Reads run in place on runtime workers at once.
pub const IN_PLACE_MAX: usize = 2;

/// Turns to read in place.
static IN_PLACE: Semaphore = Semaphore::const_new(IN_PLACE_MAX);

/// A read handed to the pool.
type Job = Box<dyn FnOnce() + Send>;

/// Why a read did not give its result: it panicked on the pool.
#[derive(Debug, thiserror::Error)]
#[error("read task failed: {0}")]
pub struct ReadTaskFailed(String);

/// Runs the blocking `read` for a waiting client: in place on this
/// worker when a turn is free, else on the reader pool (see the module
/// documentation).
///
/// # Errors
/// [`ReadTaskFailed`] when the read panicked on the pool (in place, a
/// panic unwinds to the caller).
pub async fn read<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Result<T, ReadTaskFailed> {
    let multi_thread = matches!(Handle::try_current().map(|h| h.runtime_flavor()), Ok(RuntimeFlavor::MultiThread));
    if multi_thread && let Ok(_turn) = IN_PLACE.try_acquire() {
        return Ok(tokio::task::block_in_place(read));
    }
    follow(read).await
}

/// Runs the blocking `read` on the reader pool once a reader is free and
/// returns its result; waiting holds no thread.
///
/// # Errors
/// [`ReadTaskFailed`] when the read panicked (the reader lives on).
pub async fn follow<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Result<T, ReadTaskFailed> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = sender.send(read());
    });
    if let Err(mpsc::SendError(job)) = readers().send(job) {
        // No reader could be started: the blocking pool does the read.
        tokio::task::spawn_blocking(job).await.map_err(|e| ReadTaskFailed(e.to_string()))?;
    }
    receiver.await.map_err(|_| ReadTaskFailed("the read panicked".to_string()))
}

/// The queue of the reader pool, started on first use.
fn readers() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..READERS {
            let receiver = Arc::clone(&receiver);
            let started = std::thread::Builder::new().name(format!("quipu-reader-{n}")).spawn(move || serve(&receiver));
            if let Err(error) = started {
                tracing::error!(%error, "cannot start a store reader thread");
            }
        }
        // With no reader started, the receiver is gone and sends fail.
        sender
    })
}

/// A reader: runs the queue's reads one at a time, for good.
fn serve(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking read drops its result sender: its caller gets the
        // error, and this reader serves the next.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_following_reads_at_once_run_on_the_readers_alone_and_a_panic_spares_them() {
        let reads = (0..1000).map(|n| {
            tokio::spawn(follow(move || {
                std::thread::sleep(std::time::Duration::from_micros(50));
                (n, std::thread::current().name().map(str::to_string))
            }))
        });
        let mut threads = HashSet::new();
        for (n, task) in reads.enumerate() {
            let (answered, thread) = task.await.expect("the task ends").expect("the read ran");
            assert_eq!(answered, n, "each caller gets its own read's result");
            threads.insert(thread.unwrap_or_default());
        }
        assert!(threads.len() <= READERS, "at most {READERS} threads read: {threads:?}");
        assert!(threads.iter().all(|name| name.starts_with("quipu-reader-")), "{threads:?}");
        let panicked = follow(|| -> u32 { panic!("a read that panics") }).await;
        assert!(panicked.is_err(), "a panicking read is an error for its caller");
        assert_eq!(follow(|| 7).await.expect("the readers live on"), 7);
        assert_eq!(read(|| 8).await.expect("a read in place"), 8);
    }
}
