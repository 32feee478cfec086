//! Where projections keep their checkpoints: the table
//! `quipu_projections` of the read store, one row per projection with the
//! next position to read. The runner locks it first in the transaction of
//! each batch, checks that nobody else moved it, and moves it with the
//! batch's effects.

use tokio_postgres::{GenericClient, Transaction};

use crate::Error;

/// Creates the checkpoint table when it is missing.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS quipu_projections (
    name text PRIMARY KEY,
    schema text NOT NULL,
    position bigint NOT NULL,
    events bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// A projection's row, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The projection.
    pub name: String,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// When it last moved, as PostgreSQL prints it.
    pub updated_at: String,
}

/// A projection's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The schema its read model lives in.
    pub schema: String,
    /// The next position to read: every event before it is applied.
    pub position: u64,
    /// Events applied so far.
    pub events: u64,
}

/// Creates the table when it is missing.
///
/// # Errors
/// PostgreSQL errors.
pub async fn ensure_table(client: &impl GenericClient) -> Result<(), Error> {
    client.batch_execute(CREATE_TABLE).await?;
    Ok(())
}

/// The row of projection `name`, if it has one.
///
/// # Errors
/// PostgreSQL errors.
pub async fn load(client: &impl GenericClient, name: &str) -> Result<Option<Checkpoint>, Error> {
    let row =
        client.query_opt("SELECT schema, position, events FROM quipu_projections WHERE name = $1", &[&name]).await?;
    Ok(row.map(|row| Checkpoint {
        schema: row.get(0),
        position: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        events: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
    }))
}

/// Every projection's row, by name (none when the table is missing).
///
/// # Errors
/// PostgreSQL errors.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Row>, Error> {
    let exists: bool = client.query_one("SELECT to_regclass('quipu_projections') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query("SELECT name, schema, position, events, updated_at::text FROM quipu_projections ORDER BY name", &[])
        .await?;
    Ok(rows
        .iter()
        .map(|row| Row {
            name: row.get(0),
            checkpoint: Checkpoint {
                schema: row.get(1),
                position: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                events: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
            },
            updated_at: row.get(4),
        })
        .collect())
}

/// Inserts the first row of projection `name`.
///
/// # Errors
/// PostgreSQL errors (a row that exists already among them).
pub async fn insert(transaction: &Transaction<'_>, name: &str, schema: &str) -> Result<(), Error> {
    transaction
        .execute("INSERT INTO quipu_projections (name, schema, position) VALUES ($1, $2, 0)", &[&name, &schema])
        .await?;
    Ok(())
}

/// Locks the row of `name` for this transaction; returns its position
/// when that is not `position` (another runner, or a rebuild, moved it).
///
/// # Errors
/// PostgreSQL errors; a missing row.
pub async fn lock_at(transaction: &Transaction<'_>, name: &str, position: u64) -> Result<Option<u64>, Error> {
    let row =
        transaction.query_one("SELECT position FROM quipu_projections WHERE name = $1 FOR UPDATE", &[&name]).await?;
    let stored = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    Ok((stored != position).then_some(stored))
}

/// Moves the (locked) row of `name` to `next`, counting `events` more.
///
/// # Errors
/// PostgreSQL errors.
pub async fn set(transaction: &Transaction<'_>, name: &str, next: u64, events: u64) -> Result<(), Error> {
    let (next, events) = (to_i64(next), to_i64(events));
    transaction
        .execute(
            "UPDATE quipu_projections SET position = $2, events = events + $3, updated_at = now() WHERE name = $1",
            &[&name, &next, &events],
        )
        .await?;
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
