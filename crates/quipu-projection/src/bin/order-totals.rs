//! `order-totals`: a runnable projection. Keeps, per `order-*` stream, the
//! sum of its events' `amount` and how many events it applied, in the
//! PostgreSQL table `order_totals.totals`, exactly once.
//!
//! Environment: `QUIPU_SERVER` (default `http://127.0.0.1:2113`),
//! `DATABASE_URL` (a libpq connection string, required),
//! `ORDER_TOTALS_BATCH_MAX` (events per transaction), and
//! `ORDER_TOTALS_PAUSE_MS` (a pause inside each transaction, for crash
//! tests). Runs until SIGTERM or Ctrl-C under a [`Supervisor`], so it
//! also runs the rebuilds asked with `quipu projection rebuild
//! order_totals`; prints where it stands.
//!
//! `order-totals bench N` measures: it writes N order events (over 1,000
//! streams, in 100-event appends), then times how long the projection
//! takes to apply them and prints events/s.

use anyhow::Context;
use async_trait::async_trait;
use quipu_client::{Client, Event, Filter};
use quipu_projection::{HandlerError, Projection, Runner, Supervisor};
use tokio_postgres::Transaction;

struct OrderTotals {
    pause: std::time::Duration,
}

#[async_trait]
impl Projection for OrderTotals {
    fn name(&self) -> &str {
        "order_totals"
    }

    fn filter(&self) -> Option<Filter> {
        Some(Filter::Category("order".into()))
    }

    async fn create(&mut self, transaction: &Transaction<'_>, schema: &str) -> Result<(), HandlerError> {
        transaction
            .batch_execute(&format!(
                "CREATE TABLE \"{schema}\".totals (stream text PRIMARY KEY, total bigint NOT NULL, events bigint NOT NULL)"
            ))
            .await?;
        Ok(())
    }

    /// Sums the batch per stream in memory, then applies it with one
    /// statement: a round trip per batch, not per event.
    async fn apply(
        &mut self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[Event],
    ) -> Result<(), HandlerError> {
        let mut sums: std::collections::BTreeMap<&str, (i64, i64)> = std::collections::BTreeMap::new();
        for event in events {
            let data: serde_json::Value = event.json()?;
            let amount = data
                .get("amount")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| format!("{} has no integer amount", event.id))?;
            let sum = sums.entry(event.stream.as_str()).or_insert((0, 0));
            *sum = (sum.0 + amount, sum.1 + 1);
        }
        let streams: Vec<&str> = sums.keys().copied().collect();
        let totals: Vec<i64> = sums.values().map(|s| s.0).collect();
        let counts: Vec<i64> = sums.values().map(|s| s.1).collect();
        let upsert = format!(
            "INSERT INTO \"{schema}\".totals (stream, total, events) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (stream) DO UPDATE SET total = totals.total + excluded.total, events = totals.events + excluded.events"
        );
        transaction.execute(&upsert, &[&streams, &totals, &counts]).await?;
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        Ok(())
    }
}

fn env_number(name: &str) -> anyhow::Result<Option<u64>> {
    std::env::var(name).ok().map(|v| v.parse().with_context(|| format!("{name}={v:?} is not a number"))).transpose()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let server = std::env::var("QUIPU_SERVER").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    let database = std::env::var("DATABASE_URL").context("set DATABASE_URL to a libpq connection string")?;
    let batch_max = env_number("ORDER_TOTALS_BATCH_MAX")?.map_or(quipu_projection::BATCH_MAX_DEFAULT, |n| n as usize);
    let pause = std::time::Duration::from_millis(env_number("ORDER_TOTALS_PAUSE_MS")?.unwrap_or(0));
    let quipu = Client::connect(server.clone()).await.with_context(|| format!("connecting to {server}"))?;
    let make = move || OrderTotals { pause };
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("bench") => {
            let events: u64 = std::env::args().nth(2).context("bench N: how many events")?.parse()?;
            let mut runner = Runner::new(quipu.clone(), connect(&database).await?).batch_max(batch_max);
            return bench(&quipu, &mut runner, &mut make(), events).await;
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; use `bench N` (or none to run)"),
    }
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    println!("order-totals: running");
    let progress = Supervisor::new(quipu, database, make).batch_max(batch_max).run(stop).await?;
    println!(
        "order-totals: stopped at position {} ({} events in {} transactions)",
        progress.position, progress.applied, progress.batches
    );
    Ok(())
}

/// Connects to PostgreSQL; the connection is driven by its own task.
async fn connect(database: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (postgres, connection) =
        tokio_postgres::connect(database, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("postgres connection ended: {error}");
        }
    });
    Ok(postgres)
}

/// Writes `events` order events, then applies everything and prints the
/// rate of the apply.
async fn bench(quipu: &Client, runner: &mut Runner, projection: &mut OrderTotals, events: u64) -> anyhow::Result<()> {
    const PER_APPEND: u64 = 100;
    let appends: Vec<quipu_client::Append> = (0..events.div_ceil(PER_APPEND))
        .map(|n| {
            let batch =
                (0..PER_APPEND).map(|i| item_added((n * PER_APPEND + i) % 97)).collect::<Result<Vec<_>, _>>()?;
            Ok(quipu_client::Append::new().stream(
                format!("order-{}", n % 1000),
                quipu_client::ExpectedRevision::Any,
                batch,
            ))
        })
        .collect::<Result<_, quipu_client::Error>>()?;
    for chunk in appends.chunks(100) {
        quipu.append_batch(chunk).await?;
    }
    let start = std::time::Instant::now();
    let progress = runner.catch_up(projection).await?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "order-totals bench: {} events in {} transactions in {seconds:.2} s: {:.0} events/s",
        progress.applied,
        progress.batches,
        progress.applied as f64 / seconds
    );
    Ok(())
}

/// An order event of the benchmark.
fn item_added(amount: u64) -> Result<quipu_client::NewEvent, quipu_client::Error> {
    quipu_client::NewEvent::json("ItemAdded", &serde_json::json!({ "amount": amount }))
}
