//! The head of the readable log: the last position whose commit is
//! durable and indexed. Readers wait on it for live tails; the sequencer
//! advances it after each group commit. Listeners let an async server turn
//! advances into wake-ups without a thread per waiter.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::position::Position;

/// Called with the new last position after each group commit; must be
/// quick and must not block (it runs on the sequencer thread).
pub type HeadListener = Arc<dyn Fn(Position) + Send + Sync>;

/// Last readable position, with waiting and listeners.
#[derive(Default)]
pub struct Head {
    last: Mutex<Option<Position>>,
    advanced: Condvar,
    listeners: Mutex<Vec<HeadListener>>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("last", &self.last()).finish()
    }
}

impl Head {
    /// A head at `last` (`None`: empty log).
    #[must_use]
    pub fn new(last: Option<Position>) -> Head {
        Head { last: Mutex::new(last), ..Head::default() }
    }

    /// The last readable position; `None` while the log is empty.
    #[must_use]
    pub fn last(&self) -> Option<Position> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the head forward to `last` and wakes waiters and listeners.
    pub fn advance(&self, last: Position) {
        {
            let mut current = self.last.lock().unwrap_or_else(|p| p.into_inner());
            assert!(current.is_none_or(|c| c < last), "the head only moves forward");
            *current = Some(last);
        }
        self.advanced.notify_all();
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for listener in listeners {
            listener(last);
        }
    }

    /// Waits until the last position is beyond `after` (any position when
    /// `None`) or `timeout` passes; returns the last position then.
    #[must_use]
    pub fn wait_beyond(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        let deadline = Instant::now() + timeout;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        while !is_beyond(*last, after) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            last = self.advanced.wait_timeout(last, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *last
    }

    /// Registers a listener called after every advance.
    pub fn listen(&self, listener: HeadListener) {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(listener);
    }
}

fn is_beyond(last: Option<Position>, after: Option<Position>) -> bool {
    match (last, after) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(last), Some(after)) => last > after,
    }
}
