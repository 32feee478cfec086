//! The projection runner against a real PostgreSQL and a real Quipu
//! server: the `order-totals` process is killed with SIGKILL mid-batch
//! several times while orders are written, restarted each time, and in
//! the end its read model equals the fold of every event, each applied
//! exactly once.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use quipu_client::{Client, ExpectedRevision, NewEvent};
use quipu_projection::{HandlerError, Projection, Runner};

use common::{Postgres, Quipu, fold, read_model};

const ORDERS: u64 = 40;
const EVENTS_PER_ORDER: u64 = 30;

fn spawn_projection(quipu: &Quipu, postgres: &Postgres) -> Child {
    Command::new(env!("CARGO_BIN_EXE_order-totals"))
        .env("QUIPU_SERVER", &quipu.address)
        .env("DATABASE_URL", &postgres.conninfo)
        .env("ORDER_TOTALS_BATCH_MAX", "25")
        .env("ORDER_TOTALS_PAUSE_MS", "15")
        .stdout(std::process::Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start order-totals")
}

fn kill(mut child: Child) {
    let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().expect("run kill");
    assert!(status.success());
    let _ = child.wait();
}

async fn write_orders(client: Client) -> u64 {
    let mut last_position = 0;
    for round in 0..EVENTS_PER_ORDER {
        for order in 0..ORDERS {
            let amount = (order * 7 + round * 3) % 50 + 1;
            let event = NewEvent::json("ItemAdded", &serde_json::json!({ "amount": amount })).expect("JSON");
            let result =
                client.append(format!("order-{order}"), ExpectedRevision::Any, vec![event]).await.expect("append");
            last_position = result.last_position.0;
        }
        // Other categories interleave and must be ignored.
        let other = NewEvent::json("Noise", &serde_json::json!({})).expect("JSON");
        client.append("audit-1", ExpectedRevision::Any, vec![other]).await.expect("append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last_position
}

async fn checkpoint(postgres: &tokio_postgres::Client) -> u64 {
    match quipu_projection::checkpoint::load(postgres, "order_totals").await.expect("load the checkpoint") {
        Some(checkpoint) => checkpoint.position,
        None => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_mid_batch_applies_every_event_exactly_once() {
    let postgres = Postgres::start();
    let quipu = Quipu::start();
    let client = Client::connect(quipu.address.clone()).await.expect("connect");
    let pg = postgres.connect().await;
    quipu_projection::checkpoint::ensure_table(&pg).await.expect("the checkpoint table");
    let writer = tokio::spawn(write_orders(client.clone()));

    let mut kills = 0;
    let mut seen = 0;
    while kills < 4 {
        let child = spawn_projection(&quipu, &postgres);
        // Kill once the checkpoint has moved: with a pause inside every
        // transaction, the kill lands in one now and then.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = checkpoint(&pg).await;
            if now > seen {
                seen = now;
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the projection made no progress");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(40 + 35 * kills)).await;
        kill(child);
        kills += 1;
    }
    let last_position = writer.await.expect("writer");

    let child = spawn_projection(&quipu, &postgres);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while checkpoint(&pg).await <= last_position {
        assert!(tokio::time::Instant::now() < deadline, "the projection never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(child);

    let expected = fold(&client).await;
    assert_eq!(expected.len() as u64, ORDERS);
    assert!(expected.values().all(|(_, events)| *events as u64 == EVENTS_PER_ORDER));
    assert_eq!(read_model(&pg).await, expected, "the read model is the fold of every event, each applied once");
}

/// A projection whose handler fails on one event.
struct Failing;

#[async_trait::async_trait]
impl Projection for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    async fn create(
        &mut self,
        transaction: &tokio_postgres::Transaction<'_>,
        schema: &str,
    ) -> Result<(), HandlerError> {
        transaction.batch_execute(&format!("CREATE TABLE \"{schema}\".seen (id text PRIMARY KEY)")).await?;
        Ok(())
    }

    async fn apply(
        &mut self,
        transaction: &tokio_postgres::Transaction<'_>,
        schema: &str,
        events: &[quipu_client::Event],
    ) -> Result<(), HandlerError> {
        for event in events {
            transaction
                .execute(&format!("INSERT INTO \"{schema}\".seen VALUES ($1)"), &[&event.id.to_string()])
                .await?;
            if event.event_type == "Bad" {
                return Err(format!("cannot handle {}", event.id).into());
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_commits_nothing_and_names_the_projection() {
    let postgres = Postgres::start();
    let quipu = Quipu::start();
    let client = Client::connect(quipu.address.clone()).await.expect("connect");
    for event_type in ["Good", "Good", "Bad", "Good"] {
        let event = NewEvent::json(event_type, &serde_json::json!({})).expect("JSON");
        client.append("thing-1", ExpectedRevision::Any, vec![event]).await.expect("append");
    }
    let mut runner = Runner::new(client.clone(), postgres.connect().await).batch_max(1);
    let error = runner.catch_up(&mut Failing).await.expect_err("the third event fails");
    let message = error.to_string();
    assert!(message.contains("failing") && message.contains("cannot handle"), "{message}");
    let pg = postgres.connect().await;
    let seen: i64 = pg.query_one("SELECT count(*) FROM failing.seen", &[]).await.expect("count").get(0);
    assert_eq!(seen, 2, "the failed batch left nothing");
    let stored = quipu_projection::checkpoint::load(&pg, "failing").await.expect("load").expect("a row");
    assert_eq!((stored.position, stored.events), (2, 2));

    let bad_name = quipu_projection::check_name("Bad-Name").expect_err("not a schema name");
    assert!(bad_name.to_string().contains("Bad-Name"));
}
