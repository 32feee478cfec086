//! [`Projection`]: what a read model kept in PostgreSQL implements.

use async_trait::async_trait;
use quipu_client::{Event, Filter};
use tokio_postgres::Transaction;

/// What a handler returns when it cannot apply an event.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A read model in PostgreSQL, built from events.
///
/// The runner calls [`Projection::apply`] with batches of events in log
/// order inside a transaction that also moves the projection's
/// checkpoint, and commits both together: an effect is applied exactly
/// once, whatever crashes.
#[async_trait]
pub trait Projection: Send {
    /// The projection's name: lowercase letters, digits and `_`, starting
    /// with a letter, at most 48 bytes. The read model lives in the
    /// PostgreSQL schema of that name.
    fn name(&self) -> &str;

    /// Which events it reads; `None` for every event. Events of system
    /// streams (`$...`) are never passed on.
    fn filter(&self) -> Option<Filter> {
        None
    }

    /// Creates the read model's tables in `schema`, which is new and
    /// empty. Qualify every table with it.
    ///
    /// # Errors
    /// Whatever stops the creation; nothing is committed.
    async fn create(&mut self, transaction: &Transaction<'_>, schema: &str) -> Result<(), HandlerError>;

    /// Applies `events`, in order, to the read model in `schema`.
    ///
    /// # Errors
    /// Whatever stops the batch; nothing of it is committed and the
    /// runner stops.
    async fn apply(
        &mut self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[Event],
    ) -> Result<(), HandlerError>;
}
