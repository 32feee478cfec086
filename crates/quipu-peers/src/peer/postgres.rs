//! "An events table in PostgreSQL", as event-sourcing teams build it: one
//! row per event with a global `BIGSERIAL` position and a unique
//! `(stream, revision)`. An append is one statement (one transaction) that
//! inserts the events only if the stream's last revision is the expected
//! one; a racing writer that slipped in between hits the unique
//! constraint, which is reported as a conflict too. Durability:
//! `synchronous_commit = on` and `fsync = on` (the defaults), so a commit
//! is flushed to the WAL before it is acknowledged.

use async_trait::async_trait;
use tokio_postgres::{Client, NoTls, Statement};

use super::{Appended, Connection, Fill, Page, Peer};

/// Rows per catch-up page.
const PAGE_ROWS: i64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position BIGSERIAL PRIMARY KEY,
    stream TEXT NOT NULL,
    revision BIGINT NOT NULL,
    type TEXT NOT NULL,
    data BYTEA NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream, revision)
)";

const APPEND: &str = "
INSERT INTO events (stream, revision, type, data)
SELECT $1, r, 'Happened', d FROM unnest($3::bigint[], $4::bytea[]) AS t(r, d)
WHERE (SELECT max(revision) FROM events WHERE stream = $1) IS NOT DISTINCT FROM $2";

const FILL: &str = "
INSERT INTO events (stream, revision, type, data)
SELECT s, r, 'Happened', d FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS t(s, r, d)";

/// A PostgreSQL server and the database to use.
pub struct Postgres {
    /// A libpq connection string.
    pub conninfo: String,
}

impl Postgres {
    async fn client(&self) -> anyhow::Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("postgres connection ended: {error}");
            }
        });
        Ok(client)
    }
}

#[async_trait]
impl Peer for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        let client = self.client().await?;
        let version: String = client.query_one("SELECT version()", &[]).await?.get(0);
        let mut settings = Vec::new();
        for name in ["synchronous_commit", "fsync", "wal_sync_method", "shared_buffers"] {
            let value: String = client.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
            settings.push(format!("{name}={value}"));
        }
        Ok(format!("{version}; {}", settings.join(" ")))
    }

    fn durability(&self) -> &'static str {
        "synced: synchronous_commit=on, fsync=on (WAL flushed before the commit returns)"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        self.client().await?.batch_execute(SCHEMA).await?;
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        let client = self.client().await?;
        let append = client.prepare(APPEND).await?;
        let fill = client.prepare(FILL).await?;
        Ok(Box::new(PostgresConnection { client, append, fill }))
    }

    /// The table with its indexes; the WAL is left out (it is recycled,
    /// not kept).
    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        let client = self.client().await?;
        let bytes: i64 = client.query_one("SELECT pg_total_relation_size('events')", &[]).await?.get(0);
        Ok(u64::try_from(bytes)?)
    }
}

struct PostgresConnection {
    client: Client,
    append: Statement,
    fill: Statement,
}

#[async_trait]
impl Connection for PostgresConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, events: &[Vec<u8>]) -> anyhow::Result<Appended> {
        let first = expected.map_or(0, |e| e as i64 + 1);
        let revisions: Vec<i64> = (0..events.len() as i64).map(|n| first + n).collect();
        let expected = expected.map(|e| e as i64);
        match self.client.execute(&self.append, &[&stream, &expected, &revisions, &events]).await {
            Ok(0) => Ok(Appended::Conflict),
            Ok(_) => Ok(Appended::Written),
            Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Ok(Appended::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let (mut streams, mut revisions, mut data) = (Vec::new(), Vec::new(), Vec::new());
        for (stream, first, events) in writes {
            for (n, event) in events.iter().enumerate() {
                streams.push(stream.as_str());
                revisions.push(i64::try_from(*first)? + n as i64);
                data.push(event.as_slice());
            }
        }
        self.client.execute(&self.fill, &[&streams, &revisions, &data]).await?;
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        let rows = self
            .client
            .query("SELECT revision, data FROM events WHERE stream = $1 ORDER BY revision", &[&stream])
            .await?;
        Ok(rows.len())
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        let from: i64 = from.map(|f| f.parse()).transpose()?.unwrap_or(0);
        let rows = self
            .client
            .query(
                "SELECT position, stream, revision, data FROM events WHERE position > $1 ORDER BY position LIMIT $2",
                &[&from, &PAGE_ROWS],
            )
            .await?;
        let next =
            (rows.len() as i64 == PAGE_ROWS).then(|| rows.last().map(|row| row.get::<_, i64>(0).to_string())).flatten();
        Ok(Page { events: rows.len(), next })
    }
}
