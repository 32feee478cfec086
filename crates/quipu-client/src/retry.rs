//! [`RetryPolicy`]: how often and how patiently a call is repeated when
//! the server cannot be reached. Appends are repeated with the same event
//! ids, so a retry after a lost reply writes nothing twice.

use std::time::Duration;

/// How calls are retried on [`crate::Error::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, from 50 ms doubling up to 2 s (about 6 s in all).
    fn default() -> RetryPolicy {
        RetryPolicy { attempts: 8, backoff_initial: Duration::from_millis(50), backoff_max: Duration::from_secs(2) }
    }
}

impl RetryPolicy {
    /// No retries.
    #[must_use]
    pub fn none() -> RetryPolicy {
        RetryPolicy { attempts: 1, ..RetryPolicy::default() }
    }

    /// The wait before attempt `attempt` (counting from 1 for the first
    /// retry).
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff_initial.saturating_mul(factor).min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1), Duration::from_millis(50));
        assert_eq!(policy.backoff(2), Duration::from_millis(100));
        assert_eq!(policy.backoff(6), Duration::from_millis(1600));
        assert_eq!(policy.backoff(7), Duration::from_secs(2));
        assert_eq!(policy.backoff(40), Duration::from_secs(2));
    }
}
