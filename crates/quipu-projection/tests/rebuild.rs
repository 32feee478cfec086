//! Rebuilds against a real PostgreSQL and a real Quipu server, asked with
//! `quipu projection rebuild` and run by the live `order-totals` process
//! (its supervisor takes the request from the server).
//!
//! - Zero downtime: while orders are written and the live model keeps
//!   moving, a fresh model is built beside it and swapped in. Readers
//!   querying all along never see an empty (or missing) model, and in the
//!   end the model equals the fold of every event.
//! - Blocking mode: appends to the closed category are refused with
//!   "replay in progress" until the rebuild is swapped in, then accepted.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use quipu_client::{Client, ExpectedRevision, NewEvent};

use common::{Postgres, Quipu, fold, read_model};

const ORDERS: u64 = 20;

fn order_totals(quipu: &Quipu, postgres: &Postgres) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-totals"));
    command
        .env("QUIPU_SERVER", &quipu.address)
        .env("DATABASE_URL", &postgres.conninfo)
        .env("ORDER_TOTALS_BATCH_MAX", "20")
        .env("ORDER_TOTALS_PAUSE_MS", "5")
        .stdout(Stdio::null());
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
                .last_position
                .0;
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
    let live = order_totals(&quipu, &postgres).spawn().expect("start the live projection");
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
    let rebuild = quipu_cli(&quipu, &postgres, &["--json", "projection", "rebuild", "order_totals"]);
    assert!(rebuild.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&rebuild.stderr));
    check_progress(&rebuild.stdout);
    writer.await.expect("writer");
    // The rebuild's own records (in system streams, which the projection's
    // category filter leaves out) may come after the writer's last order;
    // one more round after the rebuild makes an order the store's last
    // event, so the projection can reach the head (lag 0) below.
    let last = write(&client, 40..41).await;
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
    let status = quipu_cli(&quipu, &postgres, &["--json", "projection", "status", "order_totals"]);
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).expect("one JSON line");
    assert_eq!(row["schema"], "order_totals", "--database reads the checkpoint row: {row}");
    let missing = quipu_cli(&quipu, &postgres, &["projection", "status", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no projection named \"nope\""));
}

/// The JSON lines of `quipu --json projection rebuild`: the request, then
/// progress that never goes back, ending done with every position done.
fn check_progress(stdout: &[u8]) {
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(stdout).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let (first, last) = (lines.first().expect("the request"), lines.last().expect("the end"));
    assert_eq!(first["rebuild"]["state"], "requested", "{first}");
    assert_eq!(last["rebuild"]["state"], "done", "{last}");
    assert_eq!(last["rebuild"]["done"], last["rebuild"]["total"], "{last}");
    let done: Vec<u64> = lines.iter().filter_map(|l| l["rebuild"]["done"].as_u64()).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "progress went back: {done:?}");
    assert!(lines.iter().all(|l| l["rebuild"]["id"] == first["rebuild"]["id"]), "one rebuild throughout");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_rebuild_refuses_appends_to_its_category_until_it_is_swapped_in() {
    let postgres = Postgres::start();
    let quipu = Quipu::start();
    let client = Client::connect(quipu.address.clone()).await.expect("connect");
    let pg = postgres.connect().await;
    write(&client, 0..10).await;

    // Asked before any runner runs, the block holds until one does.
    let requested = quipu_cli(
        &quipu,
        &postgres,
        &["projection", "rebuild", "order_totals", "--block-category", "order", "--detach"],
    );
    assert!(requested.status.success(), "{}", String::from_utf8_lossy(&requested.stderr));
    assert!(String::from_utf8_lossy(&requested.stdout).contains("appends to order are refused until it ends"));
    let before = client.stream_info("order-1").await.expect("info").last_revision;
    match client.append("order-1", ExpectedRevision::Any, vec![order_event(1)]).await {
        Err(quipu_client::Error::ReplayInProgress(message)) => assert!(message.contains("replay in progress")),
        other => panic!("an append to a closed category: {other:?}"),
    }
    let cli_append =
        quipu_cli(&quipu, &postgres, &["append", "order-2", "--type", "ItemAdded", "--data", r#"{"amount": 1}"#]);
    assert_eq!(cli_append.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli_append.stderr).contains("replay in progress"), "{cli_append:?}");
    assert_eq!(client.stream_info("order-1").await.expect("info").last_revision, before, "nothing written");
    client.append("customer-1", ExpectedRevision::Any, vec![order_event(1)]).await.expect("another category");

    // The runner takes the rebuild, swaps it in, and the category opens.
    let live = order_totals(&quipu, &postgres).spawn().expect("start the projection");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rebuild = client.projection_info("order_totals").await.ok().and_then(|i| i.rebuild);
        let state = rebuild.as_ref().map(|r| r.state);
        if state == Some(quipu_client::RebuildState::Done) {
            break;
        }
        assert_ne!(state, Some(quipu_client::RebuildState::Failed), "the rebuild failed: {rebuild:?}");
        assert!(tokio::time::Instant::now() < deadline, "the rebuild never finished: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = client.append("order-1", ExpectedRevision::Any, vec![order_event(5)]).await.expect("open again");
    wait_for(&pg, last.last_position.0).await;
    stop(live);
    assert_eq!(read_model(&pg).await, fold(&client).await, "the model is the fold of every event");
}

fn order_event(amount: i64) -> NewEvent {
    NewEvent::json("ItemAdded", &serde_json::json!({ "amount": amount })).expect("JSON")
}
