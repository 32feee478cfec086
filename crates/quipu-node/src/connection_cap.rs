//! How many connections one door holds open at once. Each door (HTTP,
//! gRPC, KurrentDB, Kafka) has its own [`ConnectionCap`]: a connection
//! accepted while the door holds its cap is refused at once (closed, or
//! for HTTP answered `503 server_busy` and closed), so a flood of idle or
//! slow connections costs the door a bounded number of file descriptors
//! and tasks and leaves the store the descriptors it needs (as Kafka's
//! `max.connections`).
//!
//! Refusals are logged at most once a second per door, with how many
//! there were since the last line: a flood must not become a flood of
//! log lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shortest time between two log lines about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The open connections of one door, at most a fixed number.
#[derive(Debug)]
pub struct ConnectionCap {
    /// The door's name, for the log.
    door: &'static str,
    /// One permit per connection the door may still take.
    permits: Arc<Semaphore>,
    /// Connections the door may hold open at once.
    connections_max: usize,
    /// Refusals not yet logged.
    refused_unlogged: AtomicU64,
    /// When the last refusal was logged, in milliseconds since `born`
    /// (0: never).
    logged_ms: AtomicU64,
    /// The cap's creation, the origin of `logged_ms`.
    born: Instant,
}

/// A connection's place under its door's cap, given back when dropped
/// (when the connection closes).
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConnectionCap {
    /// A cap of `connections_max` open connections for the door named
    /// `door` (at least one: a cap of 0 is taken as 1).
    #[must_use]
    pub fn new(door: &'static str, connections_max: usize) -> Arc<ConnectionCap> {
        let connections_max = connections_max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ConnectionCap {
            door,
            permits: Arc::new(Semaphore::new(connections_max)),
            connections_max,
            refused_unlogged: AtomicU64::new(0),
            logged_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// A place for one more connection, or `None` (logged, rate-limited)
    /// when the door holds its cap: the caller then refuses the
    /// connection at once.
    #[must_use]
    pub fn admit(&self) -> Option<ConnectionPermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(ConnectionPermit { _permit: permit }),
            Err(_) => {
                self.note_refusal();
                None
            }
        }
    }

    /// Connections the door may hold open at once.
    #[must_use]
    pub fn connections_max(&self) -> usize {
        self.connections_max
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.connections_max.saturating_sub(self.permits.available_permits())
    }

    /// Counts a refusal and logs the refusals so far unless a line was
    /// logged within [`REFUSAL_LOG_INTERVAL`].
    fn note_refusal(&self) {
        self.refused_unlogged.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let logged_ms = self.logged_ms.load(Ordering::Relaxed);
        let interval_ms = u64::try_from(REFUSAL_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if logged_ms != 0 && now_ms.saturating_sub(logged_ms) < interval_ms {
            return;
        }
        // One thread of those racing here logs.
        if self.logged_ms.compare_exchange(logged_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let refused = self.refused_unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            door = self.door,
            connections_max = self.connections_max,
            refused,
            "refusing connections: the door holds its cap of open connections (--max-connections)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_door_takes_connections_up_to_its_cap_and_more_once_one_closes() {
        let cap = ConnectionCap::new("test", 2);
        let first = cap.admit().expect("room for the first");
        let _second = cap.admit().expect("room for the second");
        assert!(cap.admit().is_none(), "the third is refused");
        assert_eq!(cap.open(), 2);
        drop(first);
        assert_eq!(cap.open(), 1);
        assert!(cap.admit().is_some(), "a closed connection makes room");
    }

    #[test]
    fn refusals_are_counted_until_they_are_logged() {
        let cap = ConnectionCap::new("test", 1);
        let _held = cap.admit().expect("room for one");
        for _ in 0..5 {
            assert!(cap.admit().is_none());
        }
        // The first refusal was logged at once; the four after it wait
        // for the next line.
        assert_eq!(cap.refused_unlogged.load(Ordering::Relaxed), 4);
    }
}
