//! Snapshots against the real `quipu serve` binary: the aggregate helper
//! loads from the newest snapshot of its schema version plus the tail and
//! equals the full fold; a policy makes it write snapshots when due;
//! snapshots of another version are ignored; loads as of a past revision;
//! delete keeps the events; a restart keeps the snapshots; bad input over
//! HTTP and the CLI.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use quipu_client::{
    Aggregate, AsOf, Client, Error, Event, ExpectedRevision, NewEvent, Revision, SnapshotPolicy, Snapshotted,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    total: i64,
    deposits: u64,
}

impl Aggregate for Balance {
    fn apply(&mut self, event: &Event) -> Result<(), Error> {
        self.total += event.json::<serde_json::Value>()?["amount"].as_i64().unwrap_or(0);
        self.deposits += 1;
        Ok(())
    }
}

impl Snapshotted for Balance {
    const SCHEMA_VERSION: u32 = 2;
}

async fn deposit(client: &Client, stream: &str, range: std::ops::Range<i64>) {
    let events: Vec<NewEvent> =
        range.map(|n| NewEvent::json("Deposited", &json!({ "amount": n % 13 })).expect("JSON")).collect();
    for chunk in events.chunks(50) {
        client.append(stream, ExpectedRevision::Any, chunk.to_vec()).await.expect("append");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_from_snapshots_equal_the_full_fold_and_policies_write_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    deposit(&client, "account-1", 0..250).await;
    let policy = SnapshotPolicy { category: "account".into(), every: 100, schema_version: Balance::SCHEMA_VERSION };
    client.set_snapshot_policy(policy.clone()).await.expect("policy");

    // Due (250 events, no snapshot): the load writes one at the last revision.
    let loaded = client.load_snapshotted::<Balance>("account-1", None).await.expect("load");
    assert_eq!(loaded, client.load::<Balance>("account-1").await.expect("full fold"));
    let listed = client.list_snapshots("account-1").await.expect("list");
    assert_eq!(listed.iter().map(|s| (s.revision, s.schema_version)).collect::<Vec<_>>(), [(Revision(249), 2)]);

    // 30 more: the snapshot plus 30 events, nothing due.
    deposit(&client, "account-1", 250..280).await;
    let load = client.load_from_snapshot("account-1", None, None).await.expect("load");
    assert_eq!(
        (load.snapshot.as_ref().map(|s| s.revision), load.events.len(), load.snapshot_due),
        (Some(Revision(249)), 30, false)
    );
    assert_eq!(load.schema_version, Some(2), "the policy's version");
    let full = client.load::<Balance>("account-1").await.expect("full fold");
    assert_eq!(client.load_snapshotted::<Balance>("account-1", None).await.expect("load"), full);

    // A snapshot of another version holds nonsense: it is never used.
    client.write_snapshot("account-1", Revision(270), 1, b"{\"total\": -1}".to_vec()).await.expect("write v1");
    assert_eq!(client.load_snapshotted::<Balance>("account-1", None).await.expect("load"), full);

    // As of the past: a snapshot beyond the moment is not used.
    for revision in [0, 99, 248, 249, 260] {
        let as_of = Some(AsOf::Revision(Revision(revision)));
        let past = client.load_snapshotted::<Balance>("account-1", as_of).await.expect("load as of");
        assert_eq!(past, client.load_as_of::<Balance>("account-1", as_of).await.expect("fold as of"), "at {revision}");
    }

    // Snapshots outlive a restart; deleting them keeps every event.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    assert_eq!(client.list_snapshots("account-1").await.expect("list").len(), 2);
    assert_eq!(client.list_snapshot_policies().await.expect("policies"), [policy]);
    assert_eq!(client.delete_snapshots("account-1").await.expect("delete"), 2);
    assert_eq!(client.load_snapshotted::<Balance>("account-1", None).await.expect("load"), full);
    assert_eq!(client.load_stream("account-1").await.expect("events").len(), 280);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_and_policies_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    deposit(&client, "account-7", 0..5).await;

    let body = r#"{"schema_version": 1, "data": {"total": 10}}"#;
    let (status, answer) = server.request("PUT", "/v1/streams/account-7/snapshots/4", Some(body));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.request("GET", "/v1/streams/account-7/load?schema_version=1", None);
    assert_eq!(status, 200);
    assert_eq!(
        (answer["snapshot"]["data"]["total"].as_i64(), answer["events"].as_array().map(Vec::len)),
        (Some(10), Some(0))
    );
    let (status, answer) = server.request("GET", "/v1/streams/account-7/load?to_revision=2", None);
    assert_eq!((status, answer["snapshot"].is_null(), answer["events"].as_array().map(Vec::len)), (200, true, Some(3)));

    for (method, path, body, want_status, want_code) in [
        ("PUT", "/v1/streams/account-7/snapshots/5", Some(body), 400, "invalid_snapshot"),
        ("PUT", "/v1/streams/account-8/snapshots/0", Some(body), 400, "invalid_snapshot"),
        ("PUT", "/v1/streams/account-7/snapshots/1", Some(r#"{"data": 1}"#), 400, "invalid_json"),
        ("GET", "/v1/streams/account-8/load", None, 404, "stream_not_found"),
        ("GET", "/v1/streams/account-7/load?to_revision=1&as_of_us=5", None, 400, "invalid_as_of"),
        ("PUT", "/v1/snapshot-policies/account", Some(r#"{"every": 0, "schema_version": 1}"#), 400, "invalid_policy"),
        ("PUT", "/v1/snapshot-policies/a-b", Some(r#"{"every": 5, "schema_version": 1}"#), 400, "invalid_category"),
        ("DELETE", "/v1/snapshot-policies/account", None, 404, "policy_not_found"),
    ] {
        let (status, answer) = server.request(method, path, body);
        assert_eq!((status, answer["code"].as_str()), (want_status, Some(want_code)), "{method} {path}: {answer}");
    }
    assert_eq!(client.list_snapshots("account-7").await.expect("list").len(), 1, "the refusals stored nothing");
    assert!(client.list_snapshot_policies().await.expect("policies").is_empty());

    let quipu = |args: &[&str]| server.cli(args);
    let written = quipu(&["snapshot", "write", "account-7", "2", "--schema-version", "3", "--data", r#"{"total": 1}"#]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let listed = quipu(&["--json", "snapshot", "list", "account-7"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 2);
    let bad = quipu(&["snapshot", "write", "account-7", "2", "--schema-version", "3", "--data", "{nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--data is not JSON"), "{bad:?}");
    let policy = quipu(&["snapshot", "policy", "set", "account", "--every", "50", "--schema-version", "3"]);
    assert!(policy.status.success(), "{}", String::from_utf8_lossy(&policy.stderr));
    let load = quipu(&["--json", "snapshot", "load", "account-7"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&load.stdout).lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["snapshot"]["revision"], 2, "the policy's version 3 is used: {first}");
}
