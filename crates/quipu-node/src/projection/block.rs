//! [`Blocks`]: the categories closed to appends while a blocking rebuild
//! of a projection runs.
//!
//! What it promises: once a blocking rebuild's request is durable, every
//! append that writes an event to one of its categories is refused, whole,
//! with a 409 `replay_in_progress` that names the category and the
//! projection, until the rebuild finishes, fails or is cancelled. Appends
//! to other categories, and the server's own system streams, go on.

use std::collections::BTreeMap;
use std::sync::RwLock;

use quipu_core::AppendRequest;
use serde_json::json;

use crate::{ApiError, ErrorCode};

/// Closed categories, each with the projection that closed it.
#[derive(Debug, Default)]
pub struct Blocks {
    closed: RwLock<BTreeMap<String, String>>,
}

impl Blocks {
    /// Refuses `request` when it writes an event to a closed category.
    ///
    /// # Errors
    /// 409 `replay_in_progress` naming the first closed category written.
    pub fn check(&self, request: &AppendRequest) -> Result<(), ApiError> {
        let closed = self.closed.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if closed.is_empty() {
            return Ok(());
        }
        for write in request.writes.iter().filter(|w| !w.events.is_empty()) {
            if let Some(projection) = closed.get(write.stream.category()) {
                return Err(replay_in_progress(write.stream.category(), projection));
            }
        }
        Ok(())
    }

    /// Replaces the closed categories with `closed` (category to
    /// projection).
    pub fn set(&self, closed: BTreeMap<String, String>) {
        *self.closed.write().unwrap_or_else(std::sync::PoisonError::into_inner) = closed;
    }
}

fn replay_in_progress(category: &str, projection: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ReplayInProgress,
        format!(
            "replay in progress: category {category:?} is closed to appends while projection {projection:?} \
             rebuilds; nothing was written. Retry when it finishes (see `quipu projection status {projection}`)"
        ),
    )
    .with("category", json!(category))
    .with("projection", json!(projection))
}

#[cfg(test)]
mod tests {
    use quipu_core::{EventType, ExpectedRevision, ProposedEvent, StreamName};

    use super::*;

    fn append(stream: &str, events: usize) -> AppendRequest {
        let event = || ProposedEvent::new(EventType::new("Placed").expect("valid"), b"{}".to_vec());
        AppendRequest::to_stream(
            StreamName::new(stream).expect("valid"),
            ExpectedRevision::Any,
            (0..events).map(|_| event()).collect(),
        )
    }

    #[test]
    fn only_writes_to_closed_categories_are_refused() {
        let blocks = Blocks::default();
        assert!(blocks.check(&append("order-1", 1)).is_ok());
        blocks.set(BTreeMap::from([("order".to_string(), "order_totals".to_string())]));
        let refused = blocks.check(&append("order-1", 1)).expect_err("order is closed");
        assert_eq!(refused.code, ErrorCode::ReplayInProgress);
        assert!(refused.message.contains("\"order\"") && refused.message.contains("order_totals"));
        assert!(blocks.check(&append("customer-1", 1)).is_ok());
        assert!(blocks.check(&append("orders-1", 1)).is_ok(), "a category is matched whole");
        assert!(blocks.check(&append("order-1", 0)).is_ok(), "a pure condition writes nothing");
        blocks.set(BTreeMap::new());
        assert!(blocks.check(&append("order-1", 1)).is_ok());
    }
}
