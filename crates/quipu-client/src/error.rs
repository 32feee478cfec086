//! The client's errors: what the server refused and why, or why it could
//! not be reached.

use crate::event::{ExpectedRevision, Position, Revision};

/// A stream whose expected revision did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConflict {
    /// The stream.
    pub stream: String,
    /// What the append expected.
    pub expected: ExpectedRevision,
    /// The stream's actual last revision; `None` when it has no events.
    pub actual: Option<Revision>,
}

/// Why an append was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conflict {
    /// Every stream whose expected revision failed.
    pub streams: Vec<StreamConflict>,
    /// First event matching the condition, when the DCB condition failed.
    pub condition_position: Option<Position>,
}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An expected revision or the condition did not hold; nothing was
    /// written. Reload and decide again.
    #[error("{message}")]
    Conflict {
        /// The server's explanation.
        message: String,
        /// Each failed stream with its actual revision.
        conflict: Conflict,
    },
    /// The append writes to a category closed while a projection rebuilds
    /// in blocking mode; nothing was written. Retry once the rebuild ends.
    #[error("{0}")]
    ReplayInProgress(String),
    /// The stream does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request was malformed or too large; the message says what.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The server could not be reached or is shutting down, after
    /// retries; an append may or may not have been written (retry it with
    /// the same event ids to find out safely).
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// Any other error status from the server.
    #[error("server error {code:?}: {message}")]
    Server {
        /// gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The address is not a valid URL.
    #[error("invalid server address {address:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// Why it is not valid.
        reason: String,
    },
    /// An event's JSON did not (de)serialise.
    #[error("event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether retrying the same call may succeed (the server was
    /// unreachable or overloaded).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// The conflict, when this is one.
    #[must_use]
    pub fn conflict(&self) -> Option<&Conflict> {
        match self {
            Error::Conflict { conflict, .. } => Some(conflict),
            _ => None,
        }
    }
}
