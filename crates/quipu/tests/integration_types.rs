//! End-to-end tests of integration events against the real `quipu serve`
//! binary: marking types (gRPC, HTTP, CLI), reading and subscribing to
//! only those events (catch-up, then live), a consumer group that takes
//! only them, the marked set across a restart, and bad input.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use quipu_client::{
    Client, Direction, Error, ExpectedRevision, Filter, GroupFilter, GroupStart, GroupTuning, NewEvent, Position,
    Start, SubscriptionItem,
};
use serde_json::json;

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

/// Appends `n` events per round over two categories: `OrderPlaced` and
/// `OrderNoted` stay internal, `OrderShipped` and `InvoiceSent` are for
/// other systems.
async fn write(client: &Client, rounds: std::ops::Range<u64>) {
    for n in rounds {
        for (stream, event_type) in [
            ("order-1", "OrderPlaced"),
            ("order-1", "OrderShipped"),
            ("invoice-1", "InvoiceSent"),
            ("order-2", "OrderNoted"),
        ] {
            let event = NewEvent::json(event_type, &json!({ "n": n })).expect("JSON");
            client.append(stream, ExpectedRevision::Any, vec![event]).await.expect("append");
        }
    }
}

/// Positions of the integration events, from `$all` itself.
async fn expected(client: &Client) -> Vec<Position> {
    let all = client.read_all(None, Direction::Forwards, 10_000).await.expect("read $all");
    all.iter().filter(|e| matches!(e.event_type.as_str(), "OrderShipped" | "InvoiceSent")).map(|e| e.position).collect()
}

fn quipu(server: &Server, args: &[&str]) -> std::process::Output {
    server.cli(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_subscriptions_see_only_integration_events_which_outlive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    write(&client, 0..20).await;

    // Marked over gRPC and the CLI; HTTP lists both.
    assert_eq!(client.mark_integration_types(&["OrderShipped".into()]).await.expect("mark"), ["OrderShipped"]);
    let marked = quipu(&server, &["integration", "mark", "InvoiceSent"]);
    assert!(marked.status.success(), "{}", String::from_utf8_lossy(&marked.stderr));
    let (status, listed) = server.request("GET", "/v1/integration-types", None);
    assert_eq!((status, listed), (200, json!({"types": ["InvoiceSent", "OrderShipped"]})));

    // Reads, paged both ways, over gRPC and HTTP.
    let want = expected(&client).await;
    assert_eq!(want.len(), 40);
    let mut got = Vec::new();
    let mut from = Position::START;
    loop {
        let page = client.read_filtered(Filter::Integration, Some(from), Direction::Forwards, 7).await.expect("read");
        let Some(last) = page.last() else { break };
        from = last.position.next();
        got.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(got, want, "forwards, in pages of 7");
    let back = client.read_filtered(Filter::Integration, None, Direction::Backwards, 5).await.expect("read");
    let back: Vec<Position> = back.iter().map(|e| e.position).collect();
    assert_eq!(back, want.iter().rev().take(5).copied().collect::<Vec<_>>(), "backwards from the end");
    let (status, body) = server.request("GET", "/v1/integration?limit=1000", None);
    assert_eq!(status, 200);
    let http: Vec<Position> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["position"].as_u64().map(Position))
        .collect();
    assert_eq!(http, want, "over HTTP");
    let cli = quipu(&server, &["--json", "read", "--integration", "--limit", "3"]);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(String::from_utf8_lossy(&cli.stdout).lines().count(), 3, "three events as JSON lines");

    // A subscription catches up, then goes live, with only those events.
    let mut subscription =
        client.subscribe(Some(Filter::Integration), Start::Position(Position::START)).await.expect("subscribe");
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), subscription.next()).await.expect("an item") {
            Some(Ok(SubscriptionItem::Event(event))) => seen.push(event.position),
            Some(Ok(SubscriptionItem::CaughtUp { .. })) => break,
            other => panic!("the subscription ended: {other:?}"),
        }
    }
    assert_eq!(seen, want, "catch-up");
    write(&client, 20..25).await;
    let want = expected(&client).await;
    while seen.len() < want.len() {
        match tokio::time::timeout(Duration::from_secs(20), subscription.next()).await.expect("a live event") {
            Some(Ok(SubscriptionItem::Event(event))) => seen.push(event.position),
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(seen, want, "live");

    // The marked set outlives a restart.
    drop(subscription);
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    assert_eq!(client.list_integration_types().await.expect("list"), ["InvoiceSent", "OrderShipped"]);
    let (status, _) = server.request("DELETE", "/v1/integration-types/InvoiceSent", None);
    assert_eq!(status, 200);
    let shipped = client.read_filtered(Filter::Integration, None, Direction::Forwards, 1000).await.expect("read");
    assert!(shipped.iter().all(|e| e.event_type == "OrderShipped") && shipped.len() == 25, "unmarked types drop out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_can_take_only_integration_events_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    client.mark_integration_types(&["OrderShipped".into(), "InvoiceSent".into()]).await.expect("mark");
    write(&client, 0..10).await;

    let filter = GroupFilter { integration: true, ..GroupFilter::default() };
    let info = client.create_group("publisher", filter, GroupStart::Beginning, GroupTuning::default()).await;
    assert!(info.expect("create").filter.integration);
    let mut consumer = client.consume_group("publisher", "p1", 0).await.expect("join");
    let want = expected(&client).await;
    let mut got = Vec::new();
    while got.len() < want.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a delivery")
            .expect("the group goes on")
            .expect("a delivery, not an error");
        consumer.ack(delivery.event.position);
        got.push(delivery.event.position);
    }
    got.sort_unstable();
    assert_eq!(got, want, "every integration event, nothing else");
    consumer.leave().await;

    // Bad input: clear errors, the marked set unchanged.
    match client.mark_integration_types(&["Fine".into(), String::new()]).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("invalid_types"), "{message}"),
        other => panic!("an empty type: {other:?}"),
    }
    match client.unmark_integration_types(&["OrderPlaced".into()]).await {
        Err(Error::NotFound(message)) => assert!(message.contains("OrderPlaced"), "{message}"),
        other => panic!("unmarking an unmarked type: {other:?}"),
    }
    let (status, body) = server.request("DELETE", "/v1/integration-types/OrderPlaced", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("type_not_marked")), "{body}");
    let (status, body) = server.request("GET", "/v1/subscribe?integration=true&type=OrderShipped", None);
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    let cli = quipu(&server, &["integration", "unmark", "Nope"]);
    assert_eq!(cli.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("not marked"), "{cli:?}");
    assert_eq!(client.list_integration_types().await.expect("list"), ["InvoiceSent", "OrderShipped"]);
}
