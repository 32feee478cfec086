//! What can stop a projection.

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Quipu refused a call or could not be reached (after the client's
    /// retries).
    #[error("quipu: {0}")]
    Quipu(#[from] quipu_client::Error),
    /// PostgreSQL failed; the batch's transaction was rolled back, so
    /// neither its effects nor its checkpoint are stored.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The projection's handler failed on an event; its batch was rolled
    /// back.
    #[error("projection {projection} failed at position {position}: {reason}")]
    Handler {
        /// The projection.
        projection: String,
        /// Position of the first event of the failed batch.
        position: u64,
        /// What the handler said.
        reason: String,
    },
    /// A name that cannot be a PostgreSQL schema of ours.
    #[error("invalid projection name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The task running the live model panicked or was cancelled.
    #[error("the projection's task stopped: {0}")]
    Stopped(String),
}
