//! The aggregate helper: load a stream, fold it into state, decide, and
//! append with the revision that was loaded, so a decision made on stale
//! state is never written. On a conflict it loads again and decides again.

use crate::Error;
use crate::client::Client;
use crate::event::{AppendResult, Event, ExpectedRevision, NewEvent, Revision};

/// Decisions tried before [`Client::execute`] gives up on a stream that
/// keeps changing under it.
pub const EXECUTE_ATTEMPTS_MAX: u32 = 16;

/// State folded from a stream's events.
pub trait Aggregate: Default {
    /// Folds one event into the state.
    ///
    /// # Errors
    /// An event the aggregate cannot read (e.g. [`Error::Json`]).
    fn apply(&mut self, event: &Event) -> Result<(), Error>;
}

/// An aggregate as loaded, with the revision it was loaded at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// Revision of the last event folded; `None` for a new stream.
    pub last_revision: Option<Revision>,
}

/// What [`Client::execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Where the events landed; `None` when the decision was to append
    /// nothing.
    pub result: Option<AppendResult>,
    /// Decisions made, 1 when no conflict happened.
    pub attempts: u32,
}

/// Why [`Client::execute`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision refused the command; nothing was written.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// The stream changed under every one of the attempts.
    #[error("the stream changed under each of {attempts} attempts; nothing was written")]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
    /// Loading or appending failed.
    #[error(transparent)]
    Client(#[from] Error),
}

impl Client {
    /// Loads `stream` and folds it into `A` (the default state for a
    /// stream with no events).
    ///
    /// # Errors
    /// A read error, or an event `A` cannot apply.
    pub async fn load<A: Aggregate>(&self, stream: &str) -> Result<Loaded<A>, Error> {
        self.load_as_of(stream, None).await
    }

    /// Loads `stream` as it stood at `as_of` (`None`: now) and folds it
    /// into `A`: the state as of a revision, a position or a time.
    ///
    /// # Errors
    /// A read error, or an event `A` cannot apply.
    pub async fn load_as_of<A: Aggregate>(&self, stream: &str, as_of: Option<crate::AsOf>) -> Result<Loaded<A>, Error> {
        let events = self.load_stream_as_of(stream, as_of).await?;
        let mut state = A::default();
        for event in &events {
            state.apply(event)?;
        }
        Ok(Loaded { state, last_revision: events.last().map(|e| e.revision) })
    }

    /// Loads `stream`, asks `decide` for the events the command produces,
    /// and appends them expecting the loaded revision. When another writer
    /// got there first, it loads again and decides again (up to
    /// [`EXECUTE_ATTEMPTS_MAX`] times). An empty decision appends nothing.
    ///
    /// # Errors
    /// [`ExecuteError::Rejected`] with `decide`'s error,
    /// [`ExecuteError::Contention`] after too many conflicts, or
    /// [`ExecuteError::Client`].
    pub async fn execute<A, E, F>(&self, stream: &str, mut decide: F) -> Result<Executed, ExecuteError<E>>
    where
        A: Aggregate,
        F: FnMut(&A) -> Result<Vec<NewEvent>, E>,
    {
        for attempt in 1..=EXECUTE_ATTEMPTS_MAX {
            let loaded: Loaded<A> = self.load(stream).await?;
            let events = decide(&loaded.state).map_err(ExecuteError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed { result: None, attempts: attempt });
            }
            let expected = ExpectedRevision::from_last(loaded.last_revision);
            match self.append(stream, expected, events).await {
                Ok(result) => return Ok(Executed { result: Some(result), attempts: attempt }),
                Err(Error::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Contention { attempts: EXECUTE_ATTEMPTS_MAX })
    }
}
