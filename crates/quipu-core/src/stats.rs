//! What the commit path costs: how many groups, appends and events it
//! committed, and the CPU time spent committing them (decisions, encoding,
//! index updates, the write and fdatasync system calls; time asleep in
//! the disk's flush is not CPU time and is not counted). Benchmarks read
//! it before and after a run to print CPU microseconds per append and per
//! event, so each change to the engine shows what it bought.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the commit path, shared by whichever thread commits.
#[derive(Debug, Default)]
pub struct CommitCounters {
    groups: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    cpu_ns: AtomicU64,
}

/// A reading of [`CommitCounters`]; subtract two readings for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Group commits (one write and one fdatasync each).
    pub groups: u64,
    /// Appends answered by the commit path (written, repeated or refused).
    pub appends: u64,
    /// Events written.
    pub events: u64,
    /// CPU time of the threads while they committed, nanoseconds.
    pub cpu_ns: u64,
}

impl CommitStats {
    /// The counts of `self` since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &CommitStats) -> CommitStats {
        CommitStats {
            groups: self.groups.saturating_sub(earlier.groups),
            appends: self.appends.saturating_sub(earlier.appends),
            events: self.events.saturating_sub(earlier.events),
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
        }
    }
}

impl CommitCounters {
    /// Adds one batch: `appends` answered, `events` written, `cpu_ns`
    /// spent, in `groups` group commits.
    pub fn add(&self, groups: u64, appends: u64, events: u64, cpu_ns: u64) {
        self.groups.fetch_add(groups, Ordering::Relaxed);
        self.appends.fetch_add(appends, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.cpu_ns.fetch_add(cpu_ns, Ordering::Relaxed);
    }

    /// The counts so far.
    #[must_use]
    pub fn read(&self) -> CommitStats {
        CommitStats {
            groups: self.groups.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
        }
    }
}

/// A handle on a store's commit counters; it stays valid after the store
/// is handed away (to a server, say), so a benchmark can read it.
#[derive(Debug, Clone)]
pub struct CommitMeter(pub(crate) Arc<CommitCounters>);

impl CommitMeter {
    /// The store's commit counts so far.
    #[must_use]
    pub fn read(&self) -> CommitStats {
        self.0.read()
    }
}

/// CPU time the calling thread has used, nanoseconds.
#[must_use]
pub fn thread_cpu_ns() -> u64 {
    clock_ns(rustix::time::ClockId::ThreadCPUTime)
}

/// CPU time the whole process has used (all threads, user and system),
/// nanoseconds.
#[must_use]
pub fn process_cpu_ns() -> u64 {
    clock_ns(rustix::time::ClockId::ProcessCPUTime)
}

fn clock_ns(clock: rustix::time::ClockId) -> u64 {
    let time = rustix::time::clock_gettime(clock);
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(u64::try_from(time.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_grows_with_work_and_readings_subtract() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > before);
        assert!(process_cpu_ns() >= thread_cpu_ns());
        let counters = CommitCounters::default();
        let start = counters.read();
        counters.add(1, 3, 5, 7);
        assert_eq!(counters.read().since(&start), CommitStats { groups: 1, appends: 3, events: 5, cpu_ns: 7 });
    }
}
