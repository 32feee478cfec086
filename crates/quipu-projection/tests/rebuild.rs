//! Zero-downtime rebuild against a real PostgreSQL and a real Quipu
//! server: while orders are written and the live `order-totals` process
//! keeps applying them, `order-totals rebuild` builds a fresh model beside
//! it and swaps it in. Readers querying all along never see an empty (or
//! missing) model, and in the end the model equals the fold of every
//! event.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use quipu_client::{Client, ExpectedRevision, NewEvent};

use common::{Postgres, Quipu, fold, read_model};

const ORDERS: u64 = 20;

fn order_totals(quipu: &Quipu, postgres: &Postgres, rebuild: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-totals"));
    command
        .env("QUIPU_SERVER", &quipu.address)
        .env("DATABASE_URL", &postgres.conninfo)
        .env("ORDER_TOTALS_BATCH_MAX", "20")
        .env("ORDER_TOTALS_PAUSE_MS", "5")
        .stdout(Stdio::null());
    if rebuild {
        command.arg("rebuild");
    }
    command
}

async fn write(client: &Client, rounds: std::ops::Range<u64>) -> u64 {
    let mut last = 0;
    for round in rounds {
        for order in 0..ORDERS {
            let event = NewEvent::json("ItemAdded", &serde_json::json!({ "amount": round % 9 + order })).expect("JSON");
            last = client
                .append(format!("order-{order}"), ExpectedRevision::Any, vec![event])
                .await
                .expect("append")
                .last_position;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    last
}

async fn position(pg: &tokio_postgres::Client) -> u64 {
    quipu_projection::checkpoint::load(pg, "order_totals").await.expect("load").map_or(0, |c| c.position)
}

async fn wait_for(pg: &tokio_postgres::Client, past: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while position(pg).await <= past {
        assert!(tokio::time::Instant::now() < deadline, "the projection never got past {past}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_swaps_in_a_full_model_and_readers_never_see_it_empty() {
    let postgres = Postgres::start();
    let quipu = Quipu::start();
    let client = Client::connect(quipu.address.clone()).await.expect("connect");
    let pg = postgres.connect().await;
    quipu_projection::checkpoint::ensure_table(&pg).await.expect("the checkpoint table");

    let first = write(&client, 0..10).await;
    let live = order_totals(&quipu, &postgres, false).spawn().expect("start the live projection");
    wait_for(&pg, first).await;

    // Readers from now on: the model must always be there and never empty.
    let reading = Arc::new(AtomicBool::new(true));
    let (reads, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (reading, reads, bad) = (Arc::clone(&reading), Arc::clone(&reads), Arc::clone(&bad));
        let pg = postgres.connect().await;
        tokio::spawn(async move {
            while reading.load(Ordering::Relaxed) {
                match pg.query_one("SELECT count(*) FROM order_totals.totals", &[]).await {
                    Ok(row) if row.get::<_, i64>(0) == ORDERS as i64 => {}
                    Ok(row) => {
                        eprintln!("a reader saw {} orders", row.get::<_, i64>(0));
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("a reader failed: {error}");
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let writer = {
        let client = client.clone();
        tokio::spawn(async move { write(&client, 10..40).await })
    };
    let rebuild = order_totals(&quipu, &postgres, true).output().expect("run the rebuild");
    assert!(rebuild.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&rebuild.stderr));
    let last = writer.await.expect("writer");
    wait_for(&pg, last).await;
    reading.store(false, Ordering::Relaxed);
    reader.await.expect("reader");
    stop(live);

    assert!(reads.load(Ordering::Relaxed) > 10, "the readers ran during the rebuild");
    assert_eq!(bad.load(Ordering::Relaxed), 0, "a reader saw a missing or partial model");
    assert_eq!(read_model(&pg).await, fold(&client).await, "the swapped-in model is the fold of every event");
    let leftovers: i64 = pg
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'order_totals\\_\\_%'", &[])
        .await
        .expect("schemas")
        .get(0);
    assert_eq!(leftovers, 0, "the rebuild's and the old schemas are gone");
    let rows: i64 = pg.query_one("SELECT count(*) FROM quipu_projections", &[]).await.expect("rows").get(0);
    assert_eq!(rows, 1, "only the live projection's checkpoint is left");

    // `quipu projection list` shows it caught up, with every event applied.
    let listed = quipu_cli(&quipu, &postgres, &["projection", "list", "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one JSON line");
    let events: i64 = fold(&client).await.values().map(|(_, n)| n).sum();
    assert_eq!((row["name"].as_str(), row["lag"].as_u64()), (Some("order_totals"), Some(0)), "{row}");
    assert_eq!(row["events"].as_i64(), Some(events), "{row}");
    let missing = quipu_cli(&quipu, &postgres, &["projection", "status", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no projection named \"nope\""));
}

/// Runs the `quipu` binary (built beside `order-totals` by `cargo test
/// --workspace`) against this test's server and read store.
fn quipu_cli(quipu: &Quipu, postgres: &Postgres, args: &[&str]) -> std::process::Output {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order-totals")).with_file_name("quipu");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p quipu` (./scripts/test does)",
        binary.display()
    );
    Command::new(binary)
        .args(["--server", &quipu.address])
        .args(args)
        .env("DATABASE_URL", &postgres.conninfo)
        .output()
        .expect("run quipu")
}
