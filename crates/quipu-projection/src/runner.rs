//! [`Runner`]: reads a projection's events from Quipu (a catch-up
//! subscription from its checkpoint) and applies them in batches, each in
//! one PostgreSQL transaction with the checkpoint.
//!
//! What it promises: an event's effect is committed exactly once. A batch
//! is either wholly committed with the checkpoint after it, or not at all
//! (a crash, a failed handler, a lost connection roll it back), and the
//! next run starts from the committed checkpoint. Each transaction locks
//! the projection's row first and checks its position: when another
//! runner (or a rebuild) moved it, the batch is rolled back and the runner
//! resumes from the stored position, so competing runners never apply an
//! event twice. Batches take what has arrived, up to
//! [`Runner::batch_max`] events, so a backlog is applied in large
//! transactions and live events with little delay.
//!
//! [`Runner::rebuild`] builds a fresh read model beside the live one (in
//! the schema `<name>__rebuild`) from the first event, while the live one
//! keeps serving and moving, then swaps them in one transaction: readers
//! see the old model or the new one, never an empty one.

use std::future::Future;

use futures_util::{FutureExt, StreamExt};
use quipu_client::{Client, Event, Position, Start, Subscription, SubscriptionItem};
use tokio::sync::watch;

use crate::Error;
use crate::checkpoint;
use crate::projection::Projection;

/// Events per transaction at most, by default.
pub const BATCH_MAX_DEFAULT: usize = 500;

/// Longest projection name: PostgreSQL identifiers have 63 bytes, and a
/// rebuild adds a suffix.
const NAME_BYTES_MAX: usize = 48;

/// What a rebuild's schema and checkpoint row add to the name.
const REBUILD_SUFFIX: &str = "__rebuild";

/// Where a projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Next position to read: every event before it is applied.
    pub position: u64,
    /// Events applied by this runner.
    pub applied: u64,
    /// Transactions committed by this runner.
    pub batches: u64,
}

/// Runs projections from one Quipu server into one PostgreSQL database.
pub struct Runner {
    quipu: Client,
    postgres: tokio_postgres::Client,
    batch_max: usize,
    /// The next position of the model this runner is writing.
    positions: watch::Sender<Option<u64>>,
}

/// What to do when the subscription catches up with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Return.
    CaughtUp,
    /// Go on with live events.
    Stopped,
}

impl Runner {
    /// A runner reading from `quipu` and writing to `postgres`.
    #[must_use]
    pub fn new(quipu: Client, postgres: tokio_postgres::Client) -> Runner {
        Runner { quipu, postgres, batch_max: BATCH_MAX_DEFAULT, positions: watch::Sender::new(None) }
    }

    /// Where the model this runner writes stands: its next position, from
    /// the start of a run (a rebuild's model during a rebuild), after each
    /// commit.
    #[must_use]
    pub fn positions(&self) -> watch::Receiver<Option<u64>> {
        self.positions.subscribe()
    }

    /// The same runner committing at most `events` events per transaction
    /// (at least 1).
    #[must_use]
    pub fn batch_max(mut self, events: usize) -> Runner {
        self.batch_max = events.max(1);
        self
    }

    /// Applies every event written so far; returns where the projection
    /// stands.
    ///
    /// # Errors
    /// See [`Error`]; what was committed before stays.
    pub async fn catch_up<P: Projection>(&mut self, projection: &mut P) -> Result<Progress, Error> {
        self.drive(projection, Until::CaughtUp, std::future::pending()).await
    }

    /// Applies events as they are written until `stop` resolves; returns
    /// where the projection stands.
    ///
    /// # Errors
    /// See [`Error`]; what was committed before stays.
    pub async fn run<P: Projection>(
        &mut self,
        projection: &mut P,
        stop: impl Future<Output = ()>,
    ) -> Result<Progress, Error> {
        self.drive(projection, Until::Stopped, stop).await
    }

    async fn drive<P: Projection>(
        &mut self,
        projection: &mut P,
        until: Until,
        stop: impl Future<Output = ()>,
    ) -> Result<Progress, Error> {
        let name = projection.name().to_string();
        check_name(&name)?;
        let stored = self.prepare(projection).await?;
        let target = Target { row: name, schema: stored.schema };
        self.follow(projection, &target, stored.position, until, stop).await
    }

    /// Applies the projection's events to `target` from `position`.
    async fn follow<P: Projection>(
        &mut self,
        projection: &mut P,
        target: &Target,
        position: u64,
        until: Until,
        stop: impl Future<Output = ()>,
    ) -> Result<Progress, Error> {
        let mut progress = Progress { position, applied: 0, batches: 0 };
        self.positions.send_replace(Some(position));
        let mut subscription = self.quipu.subscribe(projection.filter(), Start::Position(Position(position))).await?;
        let mut stop = std::pin::pin!(stop);
        loop {
            let first = tokio::select! {
                item = subscription.next() => item,
                () = &mut stop => return Ok(progress),
            };
            let Some(first) = first else {
                return Err(Error::Quipu(quipu_client::Error::Unavailable("the subscription ended".into())));
            };
            let (batch, caught_up) = self.gather(first?, &mut subscription)?;
            if let Some(next) = batch.next_position
                && let Some(moved) = self.commit(projection, target, &mut progress, &batch.events, next).await?
            {
                tracing::info!(projection = %target.row, from = progress.position, to = moved, "the checkpoint moved under this runner; resuming there");
                progress.position = moved;
                self.positions.send_replace(Some(moved));
                subscription = self.quipu.subscribe(projection.filter(), Start::Position(Position(moved))).await?;
                continue;
            }
            if caught_up && until == Until::CaughtUp {
                return Ok(progress);
            }
        }
    }

    /// Rebuilds the projection's read model from the first event beside
    /// the live one (which keeps serving, and may keep moving under another
    /// runner), then swaps the two in one transaction and drops the old
    /// one. Returns where the new model stands.
    ///
    /// # Errors
    /// See [`Error`]; before the swap the live model is untouched.
    pub async fn rebuild<P: Projection>(&mut self, projection: &mut P) -> Result<Progress, Error> {
        let name = projection.name().to_string();
        check_name(&name)?;
        self.prepare(projection).await?;
        let target = Target { row: format!("{name}{REBUILD_SUFFIX}"), schema: format!("{name}{REBUILD_SUFFIX}") };
        let transaction = self.postgres.transaction().await?;
        // A rebuild that stopped half-way leaves its schema and row: start over.
        transaction.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", target.schema)).await?;
        transaction.execute("DELETE FROM quipu_projections WHERE name = $1", &[&target.row]).await?;
        create_model(&transaction, projection, &target).await?;
        transaction.commit().await?;
        let mut total = Progress { position: 0, applied: 0, batches: 0 };
        loop {
            let built =
                self.follow(projection, &target, total.position, Until::CaughtUp, std::future::pending()).await?;
            total = Progress {
                position: built.position,
                applied: total.applied + built.applied,
                batches: total.batches + built.batches,
            };
            if self.swap(&name, &target, total.position).await? {
                return Ok(total);
            }
        }
    }

    /// Swaps the rebuilt model in when it is at least as far as the live
    /// one; `false` when the live one moved ahead (catch up and try again).
    async fn swap(&mut self, name: &str, rebuilt: &Target, position: u64) -> Result<bool, Error> {
        let transaction = self.postgres.transaction().await?;
        let live = checkpoint::lock_at(&transaction, name, u64::MAX).await?.unwrap_or(0);
        if live > position {
            return Ok(false);
        }
        let events: i64 = transaction
            .query_one("SELECT events FROM quipu_projections WHERE name = $1", &[&rebuilt.row])
            .await?
            .get(0);
        let old = format!("{name}__old");
        transaction
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{old}\" CASCADE; \
                 ALTER SCHEMA \"{name}\" RENAME TO \"{old}\"; \
                 ALTER SCHEMA \"{new}\" RENAME TO \"{name}\"; \
                 DROP SCHEMA \"{old}\" CASCADE",
                new = rebuilt.schema
            ))
            .await?;
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        transaction
            .execute(
                "UPDATE quipu_projections SET position = $2, events = $3, updated_at = now() WHERE name = $1",
                &[&name, &position, &events],
            )
            .await?;
        transaction.execute("DELETE FROM quipu_projections WHERE name = $1", &[&rebuilt.row]).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Creates the checkpoint table, and on the first run the read model's
    /// schema and tables with the projection's row, in one transaction.
    async fn prepare<P: Projection>(&mut self, projection: &mut P) -> Result<checkpoint::Checkpoint, Error> {
        let name = projection.name().to_string();
        checkpoint::ensure_table(&self.postgres).await?;
        if let Some(stored) = checkpoint::load(&self.postgres, &name).await? {
            return Ok(stored);
        }
        let transaction = self.postgres.transaction().await?;
        create_model(&transaction, projection, &Target { row: name.clone(), schema: name.clone() }).await?;
        transaction.commit().await?;
        Ok(checkpoint::Checkpoint { schema: name, position: 0, events: 0 })
    }

    /// The first item plus whatever has already arrived, up to the batch
    /// limit; whether the subscription caught up on the way.
    fn gather(&self, first: SubscriptionItem, subscription: &mut Subscription) -> Result<(Batch, bool), Error> {
        let mut batch = Batch::default();
        let mut caught_up = batch.add(first);
        while !caught_up && batch.events.len() < self.batch_max {
            match subscription.next().now_or_never() {
                Some(Some(item)) => caught_up = batch.add(item?),
                Some(None) | None => break,
            }
        }
        Ok((batch, caught_up))
    }

    /// Applies `events` to `target` and moves its checkpoint to `next` in
    /// one transaction; returns the stored position instead, committing
    /// nothing, when someone else moved the checkpoint.
    async fn commit<P: Projection>(
        &mut self,
        projection: &mut P,
        target: &Target,
        progress: &mut Progress,
        events: &[Event],
        next: u64,
    ) -> Result<Option<u64>, Error> {
        let transaction = self.postgres.transaction().await?;
        if let Some(moved) = checkpoint::lock_at(&transaction, &target.row, progress.position).await? {
            return Ok(Some(moved));
        }
        if !events.is_empty() {
            projection
                .apply(&transaction, &target.schema, events)
                .await
                .map_err(|e| handler(&target.row, progress.position, &e))?;
        }
        checkpoint::set(&transaction, &target.row, next, events.len() as u64).await?;
        transaction.commit().await?;
        progress.position = next;
        self.positions.send_replace(Some(next));
        progress.applied += events.len() as u64;
        progress.batches += 1;
        Ok(None)
    }
}

/// Where a run writes: the checkpoint row and the schema of its model.
#[derive(Debug, Clone)]
struct Target {
    row: String,
    schema: String,
}

/// Events gathered for one transaction.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<Event>,
    /// Position after the last event seen (system events included).
    next_position: Option<u64>,
}

impl Batch {
    /// Adds an item; returns whether it says the subscription caught up.
    fn add(&mut self, item: SubscriptionItem) -> bool {
        match item {
            SubscriptionItem::Event(event) => {
                self.next_position = Some(event.position.next().0);
                if !event.stream.starts_with('$') {
                    self.events.push(event);
                }
                false
            }
            SubscriptionItem::CaughtUp { .. } => true,
        }
    }
}

/// Creates `target`'s schema, the projection's tables in it, and its
/// checkpoint row at position 0, in `transaction`.
async fn create_model<P: Projection>(
    transaction: &tokio_postgres::Transaction<'_>,
    projection: &mut P,
    target: &Target,
) -> Result<(), Error> {
    transaction.batch_execute(&format!("CREATE SCHEMA \"{}\"", target.schema)).await?;
    projection.create(transaction, &target.schema).await.map_err(|e| handler(&target.row, 0, &e))?;
    checkpoint::insert(transaction, &target.row, &target.schema).await
}

fn handler(projection: &str, position: u64, error: &crate::HandlerError) -> Error {
    Error::Handler { projection: projection.to_string(), position, reason: error.to_string() }
}

/// Checks a projection name: lowercase ASCII letters, digits and `_`,
/// starting with a letter, at most [`NAME_BYTES_MAX`] bytes.
///
/// # Errors
/// [`Error::InvalidName`] saying which rule it breaks.
pub fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Err(Error::InvalidName { name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return invalid("must have 1 to 48 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("must start with a lowercase letter");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return invalid("may hold only lowercase letters, digits and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_schema_names() {
        assert!(check_name("order_totals_2").is_ok());
        for bad in ["", "2orders", "Orders", "order-totals", "a\"b", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
