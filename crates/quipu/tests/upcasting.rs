//! Upcasting against the real `quipu serve` binary: a store holding
//! versions 1, 2 and 3 of one event type reads as version 3 everywhere
//! (gRPC and HTTP reads, a subscription, a group), raw reads return what
//! was written, the declarations are listed with the set's version and
//! outlive a restart, and bad declarations change nothing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use quipu_client::{
    Client, Direction, Error, ExpectedRevision, Filter, GroupFilter, GroupStart, GroupTuning, NewEvent, Revision,
    Start, SubscriptionItem, Upcaster,
};
use serde_json::{Value, json};

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

fn registered(data: Value, version: Option<u64>) -> NewEvent {
    let event = NewEvent::json("CustomerRegistered", &data).expect("JSON");
    match version {
        Some(v) => event.with_metadata(json!({ "schema_version": v }).to_string()),
        None => event,
    }
}

/// Version 3 of the data.
fn v3(n: u64) -> Value {
    json!({"full_name": format!("Ada {n}"), "tier": "basic", "address": {"city": "London"}})
}

async fn declare(client: &Client, from_version: u32, steps: Value) -> Result<(u64, Vec<Upcaster>), Error> {
    client.declare_upcaster(&Upcaster { event_type: "CustomerRegistered".into(), from_version, steps }).await
}

fn data(event: &quipu_client::Event) -> Value {
    event.json().expect("JSON data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_versions_read_as_the_current_one_and_raw_reads_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let group = GroupFilter { category: Some("customer".into()), ..GroupFilter::default() };
    client.create_group("crm", group, GroupStart::Beginning, GroupTuning::default()).await.expect("group");

    // Written as version 1 (no version in the metadata), 2 and 3.
    let written = vec![
        registered(json!({"name": "Ada 0", "town": "London"}), None),
        registered(json!({"name": "Ada 1", "town": "London"}), Some(1)),
        registered(json!({"full_name": "Ada 2", "town": "London"}), Some(2)),
        registered(v3(3), Some(3)),
    ];
    client.append("customer-1", ExpectedRevision::NoStream, written).await.expect("append");
    let (set, _) = declare(&client, 1, json!([{"rename": {"path": "name", "to": "full_name"}}])).await.expect("v1");
    assert_eq!(set, 1);
    let steps = json!([{"add": {"path": "tier", "value": "basic"}}, {"move": {"from": "town", "to": "address.city"}}]);
    let (set, listed) = declare(&client, 2, steps).await.expect("v2");
    assert_eq!((set, listed.len()), (2, 2));

    let events = client.read_stream("customer-1", None, Direction::Forwards, 10).await.expect("read");
    for (n, event) in events.iter().enumerate() {
        assert_eq!(data(event), v3(n as u64), "event {n}");
        let metadata: Value = serde_json::from_slice(&event.metadata).expect("JSON metadata");
        assert_eq!(metadata["schema_version"], 3, "event {n}");
    }
    let raw =
        client.clone().raw_reads(true).read_stream("customer-1", None, Direction::Forwards, 10).await.expect("raw");
    assert_eq!(data(&raw[0]), json!({"name": "Ada 0", "town": "London"}), "a raw read returns what was written");
    assert!(raw[0].metadata.is_empty());
    let filtered = client.read_filtered(Filter::Category("customer".into()), None, Direction::Forwards, 10).await;
    assert!(filtered.expect("read").iter().enumerate().all(|(n, e)| data(e) == v3(n as u64)));

    let (status, body) = server.request("GET", "/v1/streams/customer-1", None);
    assert_eq!((status, &body["events"][0]["data"]), (200, &v3(0)));
    let (_, body) = server.request("GET", "/v1/streams/customer-1?raw=true", None);
    assert_eq!(body["events"][0]["data"], json!({"name": "Ada 0", "town": "London"}));

    let mut subscription =
        client.subscribe(Some(Filter::Stream("customer-1".into())), Start::Revision(Revision(0))).await.expect("sub");
    for n in 0..4 {
        match tokio::time::timeout(Duration::from_secs(20), subscription.next()).await.expect("an item") {
            Some(Ok(SubscriptionItem::Event(event))) => assert_eq!(data(&event), v3(n), "subscription event {n}"),
            other => panic!("unexpected: {other:?}"),
        }
    }
    let mut consumer = client.consume_group("crm", "m", 0).await.expect("join");
    for _ in 0..4 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next()).await.expect("a delivery");
        let delivery = delivery.expect("the group goes on").expect("a delivery");
        assert_eq!(data(&delivery.event), v3(delivery.event.revision.0), "group delivery");
        consumer.ack(delivery.event.position);
    }
    consumer.leave().await;

    // Bad declarations change nothing; the set outlives a restart.
    for (from, steps, what) in [
        (4, json!([{"remove": {"path": "tier"}}]), "declare it first"),
        (0, json!([{"remove": {"path": "tier"}}]), "count from 1"),
        (3, json!([]), "at least one step"),
        (3, json!([{"rename": {"path": "tier", "to": "a.b"}}]), "use move"),
        (3, json!([{"explode": {}}]), "not a JSON array of steps"),
    ] {
        match declare(&client, from, steps).await {
            Err(Error::InvalidArgument(message)) => assert!(message.contains(what), "{message}"),
            other => panic!("a bad declaration from {from}: {other:?}"),
        }
    }
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    assert_eq!(client.list_upcasters().await.expect("list").0, 2);
    let events = client.read_stream("customer-1", None, Direction::Forwards, 10).await.expect("read");
    assert_eq!(data(&events[1]), v3(1));

    let quipu = |args: &[&str]| server.cli(args);
    let raw = quipu(&["--json", "read", "customer-1", "--raw", "--limit", "1"]);
    assert!(String::from_utf8_lossy(&raw.stdout).contains("\"town\""), "{raw:?}");
    let listed = quipu(&["--json", "upcaster", "list"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["set_version"], 2);
    let declared = quipu(&[
        "upcaster",
        "declare",
        "CustomerRegistered",
        "--from",
        "3",
        "--steps",
        r#"[{"remove": {"path": "tier"}}]"#,
    ]);
    assert!(declared.status.success(), "{}", String::from_utf8_lossy(&declared.stderr));
    let events = client.read_stream("customer-1", None, Direction::Forwards, 10).await.expect("read");
    assert!(events.iter().all(|e| data(e).get("tier").is_none()), "the chain now runs to version 4");
}
