//! The source of commit timestamps. The sequencer reads it once per batch;
//! the engine itself never reads a clock, so replaying a log decides the
//! same way whatever the time is. Tests inject a deterministic clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Gives the current time in microseconds since the Unix epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The operating system's wall clock.
    #[must_use]
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        }))
    }

    /// A clock that starts at `start_us` and advances by `step_us` at
    /// every reading: deterministic, for tests.
    #[must_use]
    pub fn stepping(start_us: u64, step_us: u64) -> Clock {
        let now = Arc::new(AtomicU64::new(start_us));
        Clock(Arc::new(move || now.fetch_add(step_us, Ordering::Relaxed)))
    }

    /// Reads the clock.
    #[must_use]
    pub fn now_us(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}
