//! What a request's body may cost before it is read. A body whose
//! declared length (`content-length`) is over the door's body limit is
//! answered `413 body_too_large` at once, its bytes never read. Every
//! other body reserves its length (a chunked body, of unknown length, the
//! body limit) from the door's [`ByteBudget`] before it is read, and holds
//! it until its request is answered; a request that finds no room within
//! the wait is answered `503 server_busy`. So many concurrent large
//! uploads cost the door at most its budget of memory, not one body limit
//! each.

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quipu_node::byte_budget::{BudgetError, ByteBudget};
use quipu_node::{ApiError, ErrorCode};

use crate::error::HttpError;

/// The door's limits on request bodies.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    /// Bytes of bodies the door buffers at once.
    pub budget: Arc<ByteBudget>,
    /// The largest body one request may have.
    pub body_bytes_max: usize,
    /// How long a request waits for room in the budget.
    pub wait: Duration,
}

/// Refuses a body over the limit by its declared length and reserves the
/// bytes of the others (see the module's documentation), then runs
/// `next`.
pub async fn guard(State(limits): State<Arc<BodyBudget>>, request: Request, next: Next) -> Response {
    let bytes = match request.body().size_hint().upper() {
        Some(0) => return next.run(request).await,
        Some(declared) => usize::try_from(declared).unwrap_or(usize::MAX),
        None => limits.body_bytes_max,
    };
    if bytes > limits.body_bytes_max {
        let message = format!("a request body of {bytes} bytes; the server takes at most {}", limits.body_bytes_max);
        return HttpError(ApiError::new(ErrorCode::BodyTooLarge, message)).into_response();
    }
    match limits.budget.reserve(bytes, limits.wait).await {
        Ok(reserved) => {
            let response = next.run(request).await;
            drop(reserved);
            response
        }
        Err(error @ BudgetError::OverBudget { .. }) => {
            HttpError(ApiError::new(ErrorCode::BodyTooLarge, error.to_string())).into_response()
        }
        Err(error @ BudgetError::Busy { .. }) => {
            HttpError(ApiError::new(ErrorCode::ServerBusy, format!("{error} (--max-request-bytes-in-flight)")))
                .into_response()
        }
    }
}
