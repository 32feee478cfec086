//! How many bytes of requests one door buffers at once. A door reserves a
//! request's bytes from its [`ByteBudget`] before it reads them (the HTTP
//! door a body's declared length, the Kafka door a frame's), so many
//! concurrent large requests wait their turn, or are refused, instead of
//! taking memory past the budget: 150 uploads of 50 MB each cost at most
//! the budget, not 150 times the body limit.
//!
//! The budget is counted in KiB (a reservation rounds up), which lets a
//! semaphore of `u32` permits count terabytes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes a permit of the budget's semaphore stands for.
const UNIT_BYTES: usize = 1024;

/// The bytes of requests one door may buffer at once.
#[derive(Debug)]
pub struct ByteBudget {
    /// One permit per [`UNIT_BYTES`] still free.
    units: Arc<Semaphore>,
    /// The budget, in bytes (a whole number of units).
    bytes_max: usize,
}

/// Bytes reserved from a budget, given back when dropped.
#[derive(Debug)]
pub struct BytesReserved {
    _units: OwnedSemaphorePermit,
}

/// Why bytes could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The request alone is larger than the whole budget: it can never be
    /// taken.
    #[error("{bytes} bytes are more than the door buffers at once ({bytes_max} bytes)")]
    OverBudget {
        /// The bytes asked for.
        bytes: usize,
        /// The whole budget.
        bytes_max: usize,
    },
    /// Other requests held the budget for as long as the caller waits.
    #[error("the door is buffering its {bytes_max} bytes of requests; retry shortly")]
    Busy {
        /// The whole budget.
        bytes_max: usize,
    },
}

impl ByteBudget {
    /// A budget of `bytes_max` bytes, rounded up to whole KiB (at least
    /// one KiB).
    #[must_use]
    pub fn new(bytes_max: usize) -> Arc<ByteBudget> {
        let units = bytes_max.div_ceil(UNIT_BYTES).clamp(1, u32::MAX as usize);
        Arc::new(ByteBudget { units: Arc::new(Semaphore::new(units)), bytes_max: units * UNIT_BYTES })
    }

    /// The whole budget, in bytes.
    #[must_use]
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes free now.
    #[must_use]
    pub fn bytes_free(&self) -> usize {
        self.units.available_permits().saturating_mul(UNIT_BYTES)
    }

    /// Reserves `bytes`, waiting up to `wait` for others to give back
    /// theirs.
    ///
    /// # Errors
    /// [`BudgetError::OverBudget`] at once when `bytes` is more than the
    /// whole budget; [`BudgetError::Busy`] when the bytes did not free up
    /// within `wait`.
    pub async fn reserve(&self, bytes: usize, wait: Duration) -> Result<BytesReserved, BudgetError> {
        let units = self.units_of(bytes)?;
        let acquiring = Arc::clone(&self.units).acquire_many_owned(units);
        match tokio::time::timeout(wait, acquiring).await {
            Ok(Ok(units)) => Ok(BytesReserved { _units: units }),
            // The semaphore is never closed; a closed one is a busy one.
            Ok(Err(_)) | Err(_) => Err(BudgetError::Busy { bytes_max: self.bytes_max }),
        }
    }

    /// Reserves `bytes` if they are free now.
    ///
    /// # Errors
    /// As [`ByteBudget::reserve`], without waiting.
    pub fn try_reserve(&self, bytes: usize) -> Result<BytesReserved, BudgetError> {
        let units = self.units_of(bytes)?;
        match Arc::clone(&self.units).try_acquire_many_owned(units) {
            Ok(units) => Ok(BytesReserved { _units: units }),
            Err(_) => Err(BudgetError::Busy { bytes_max: self.bytes_max }),
        }
    }

    /// The permits `bytes` take.
    fn units_of(&self, bytes: usize) -> Result<u32, BudgetError> {
        if bytes > self.bytes_max {
            return Err(BudgetError::OverBudget { bytes, bytes_max: self.bytes_max });
        }
        // At most the budget's units, which fit a u32 (see `new`).
        Ok(u32::try_from(bytes.div_ceil(UNIT_BYTES)).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_past_the_budget_wait_for_bytes_given_back() {
        let budget = ByteBudget::new(10 * 1024);
        let first = budget.reserve(6 * 1024, Duration::from_secs(10)).await.expect("room");
        assert_eq!(budget.bytes_free(), 4 * 1024);
        let refused = budget.reserve(6 * 1024, Duration::from_millis(10)).await;
        assert_eq!(refused.err(), Some(BudgetError::Busy { bytes_max: 10 * 1024 }));
        assert!(budget.try_reserve(4 * 1024).is_ok(), "what is free can be taken");
        drop(first);
        assert!(budget.try_reserve(6 * 1024).is_ok(), "bytes given back are free again");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_is_refused_at_once() {
        let budget = ByteBudget::new(4096);
        let refused = budget.reserve(4097, Duration::from_secs(3600)).await;
        assert_eq!(refused.err(), Some(BudgetError::OverBudget { bytes: 4097, bytes_max: 4096 }));
    }

    #[test]
    fn reservations_round_up_to_whole_kib() {
        let budget = ByteBudget::new(2048);
        let _one = budget.try_reserve(1).expect("room");
        assert_eq!(budget.bytes_free(), 1024);
    }
}
