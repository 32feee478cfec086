//! Cluster mode through the real binary: `quipu serve --cluster-brokers
//! --cluster-topic` processes sharing one topic on a real Kafka-protocol
//! broker (noida-db, which `scripts/test` installs). Appends sent to
//! different nodes are decided once and alike; every node serves the same
//! `$all`; a node killed with SIGKILL, and a node started on an empty data
//! directory, catch up to the same state before they serve; a read that
//! waits for an append's position sees it on any node. A consumer group
//! runs on its home node only, moves by hand, and moves by itself to a
//! node that is up when its home stops.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Load, Server, append_until_interrupted, check_streams, serve_command};
use quipu_cluster::LocalBroker;
use serde_json::{Value, json};

const TOPIC: &str = "quipu-log";
const PARTITIONS: u32 = 3;

/// A broker with the cluster's topic, made by `quipu cluster create-topic`
/// (which refuses to make it twice).
fn start_broker(data: &Path) -> LocalBroker {
    let broker = LocalBroker::start(data).unwrap();
    let create = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quipu"))
            .args(["cluster", "create-topic", "--brokers", &broker.address, "--topic", TOPIC])
            .args(["--partitions", &PARTITIONS.to_string(), "--replication-factor", "1"])
            .output()
            .unwrap()
    };
    let created = create();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created topic quipu-log: 3 partitions"));
    let again = create();
    assert!(!again.status.success(), "a second create-topic must fail");
    assert!(String::from_utf8_lossy(&again.stderr).contains("creating topic quipu-log"), "{again:?}");
    broker
}

/// A node of the cluster on `data_dir`, named `node`.
fn start_node(broker: &LocalBroker, data_dir: &Path, node: &str) -> Server {
    start_node_with(broker, data_dir, node, &[])
}

/// A node of the cluster on `data_dir`, named `node`, with `more` options.
fn start_node_with(broker: &LocalBroker, data_dir: &Path, node: &str, more: &[&str]) -> Server {
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--cluster-brokers", &broker.address, "--cluster-topic", TOPIC, "--cluster-node", node])
        .args(more)
        .arg("--data-dir")
        .arg(data_dir);
    Server::spawn(command)
}

/// Every event of `$all` on `server`, as served.
fn all(server: &Server) -> Vec<Value> {
    let (status, body) = server.request("GET", "/v1/all?from=0&limit=10000", None);
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// `$all` of `server` once it holds as many events as `reference` has.
fn all_when_caught_up(server: &Server, reference: &Server) -> (Vec<Value>, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (expected, served) = (all(reference), all(server));
        if served.len() >= expected.len() || Instant::now() > deadline {
            return (expected, served);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An append of one event with a fixed id (so it can be sent again).
fn opening(n: u32, node: &str) -> Value {
    json!({"expected_revision": "no_stream", "events": [{
        "id": format!("6f1c9b7e-2f44-4b8e-9a53-{:04x}{n:08x}", node.as_bytes()[0]),
        "type": "AccountOpened",
        "data": {"by": node},
    }]})
}

#[test]
fn nodes_on_one_topic_decide_alike_and_killed_or_new_nodes_catch_up() {
    let broker_data = tempfile::tempdir().unwrap();
    let broker = start_broker(broker_data.path());
    let (a_dir, b_dir, c_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&broker, a_dir.path(), "a");
    let b = start_node(&broker, b_dir.path(), "b");

    // Each account is opened on both nodes at once: one opening wins, the
    // other is told the stream exists, whichever node it was sent to.
    let accounts = 8u32;
    let winners: Vec<(u32, &str)> = std::thread::scope(|scope| {
        let rounds: Vec<_> = (0..accounts)
            .map(|n| {
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    let stream = format!("account-{n}");
                    let on_b = scope.spawn(move || b.append(&stream, &opening(n, "b")));
                    let (a_status, a_body) = a.append(&format!("account-{n}"), &opening(n, "a"));
                    let (b_status, b_body) = on_b.join().unwrap();
                    let mut statuses = [a_status, b_status];
                    statuses.sort_unstable();
                    assert_eq!(statuses, [200, 409], "account-{n}: a said {a_body}, b said {b_body}");
                    let loser = if a_status == 409 { &a_body } else { &b_body };
                    assert_eq!(loser["code"], "wrong_expected_revision", "{loser}");
                    (n, if a_status == 200 { "a" } else { "b" })
                })
            })
            .collect();
        rounds.into_iter().map(|round| round.join().unwrap()).collect()
    });
    let (on_a, on_b) = all_when_caught_up(&b, &a);
    assert_eq!(on_a.len(), accounts as usize, "one opening per account");
    assert_eq!(on_a, on_b, "both nodes serve the same events at the same positions and times");

    // The winner's append sent again to the other node is a retry, not a
    // conflict.
    let (n, winner) = winners[0];
    let other = if winner == "a" { &b } else { &a };
    let (status, body) = other.append(&format!("account-{n}"), &opening(n, winner));
    assert_eq!((status, &body["already_written"]), (200, &json!(true)), "{body}");

    // The server's own registries follow what other nodes write: a stream
    // deleted on one node reads as deleted on the other.
    let (status, body) = a.request("DELETE", "/v1/streams/account-7", None);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.request("GET", "/v1/streams/account-7", None).0 != 404 {
        assert!(Instant::now() < deadline, "b never saw the delete made on a");
        std::thread::sleep(Duration::from_millis(20));
    }

    // An atomic append across partitions is refused, naming the option.
    let refused = (1..50).find_map(|n| {
        let body = json!({"writes": [
            {"stream": "transfer-0", "expected_revision": "any", "events": [{"type": "Moved", "data": {}}]},
            {"stream": format!("transfer-{n}"), "expected_revision": "any", "events": [{"type": "Moved", "data": {}}]},
        ]});
        let (status, body) = a.request("POST", "/v1/append", Some(&body.to_string()));
        (status == 400).then_some(body)
    });
    let refused = refused.expect("some pair of 50 streams spans two of three partitions");
    assert_eq!(refused["code"], "cross_partition", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("--cluster-partition-key"), "{refused}");

    // A node killed under load (eight writers appending through it) and
    // appends it misses meanwhile: restarted, it applies them before it
    // serves, holds every append it acknowledged, and an append cut off by
    // the kill is wholly there or wholly absent, and taken as a retry.
    let load = Load { writers: 8, streams: 4, acknowledged_before_interrupt: 200, id_seed: 7 };
    let mut ledger = append_until_interrupted(&b, &load, |b| b.signal("KILL"));
    assert_eq!(b.wait(), None, "b died of SIGKILL");
    for n in accounts..accounts + 20 {
        assert_eq!(a.append(&format!("account-{n}"), &opening(n, "a")).0, 200);
    }
    let b = start_node(&broker, b_dir.path(), "b");
    check_streams(&b, &ledger);
    ledger.retry_unknown(&b);
    let (on_b, on_a) = all_when_caught_up(&a, &b);
    assert_eq!(on_a, on_b, "the restarted node serves the same events as the others");
    check_streams(&a, &ledger);

    // A node on an empty data directory replays the topic to the same
    // state, and takes appends like the others.
    let c = start_node(&broker, c_dir.path(), "c");
    assert_eq!(all(&c), all(&a), "a new node replays the topic to the same events");
    let (status, body) =
        c.append("account-0", &json!({"expected_revision": 0, "events": [{"type": "Deposited", "data": {}}]}));
    assert_eq!(status, 200, "{body}");
    let (on_a, on_c) = all_when_caught_up(&a, &c);
    assert_eq!(on_a, on_c);
    let (on_b, on_c) = all_when_caught_up(&b, &c);
    assert_eq!(on_b, on_c);

    // SIGTERM stops a node cleanly, saving where its merge stands.
    assert_eq!(c.terminate(), Some(0), "a node stops cleanly on SIGTERM");
    let state = std::fs::read_to_string(c_dir.path().join("cluster-merge-state")).unwrap();
    assert!(state.starts_with("quipu-merge-state 1\ntopic quipu-log\npartitions 3\n"), "{state}");
}

/// Polls `path` on `server` until `done` holds for its answer (30 s).
fn until(server: &Server, method: &str, path: &str, body: Option<&str>, done: impl Fn(u16, &Value) -> bool) -> Value {
    until_within(Duration::from_secs(30), server, method, path, body, done)
}

/// As [`until`], for at most `limit`.
fn until_within(
    limit: Duration,
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    done: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, answer) = server.request(method, path, body);
        if done(status, &answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{method} {path}: still {status} {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_group_runs_on_its_home_node_and_moves_by_hand() {
    let broker_data = tempfile::tempdir().unwrap();
    let broker = start_broker(broker_data.path());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&broker, a_dir.path(), "a");
    let b = start_node(&broker, b_dir.path(), "b");
    let create = json!({"name": "billing", "filter": {"category": "order"}, "start": "beginning"}).to_string();
    let (status, created) = a.request("POST", "/v1/groups", Some(&create));
    assert_eq!((status, &created["home"], &created["running_here"]), (201, &json!("a"), &json!(true)), "{created}");
    let (status, _) = a.append("order-1", &json!({"events": [{"type": "Placed", "data": {}}]}));
    assert_eq!(status, 200);

    // b knows the group, and sends its members to a.
    let seen = until(&b, "GET", "/v1/groups/billing", None, |status, _| status == 200);
    assert_eq!((&seen["home"], &seen["running_here"]), (&json!("a"), &json!(false)), "{seen}");
    // The CLI, over gRPC, says the same.
    let info = b.cli(&["--json", "group", "info", "billing"]);
    assert!(info.status.success(), "{}", String::from_utf8_lossy(&info.stderr));
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!((&info["home"], &info["running_here"]), (&json!("a"), &json!(false)), "{info}");
    let poll = json!({"max": 10, "wait_ms": 2000}).to_string();
    let (status, refused) = b.request("POST", "/v1/groups/billing/members/w1/poll", Some(&poll));
    assert_eq!((status, &refused["code"]), (409, &json!("group_elsewhere")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("node a"), "{refused}");
    let taken = until(&a, "POST", "/v1/groups/billing/members/w1/poll", Some(&poll), |status, answer| {
        status == 200 && !answer["events"].as_array().unwrap().is_empty()
    });
    let position = taken["events"][0]["event"]["position"].clone();
    let ack = json!({"positions": [position]}).to_string();
    assert_eq!(a.request("POST", "/v1/groups/billing/members/w1/ack", Some(&ack)).0, 200);

    // Moved from b to b once b holds a's checkpoint past the ack (a
    // writes one within a second): a stops it, b runs it from there. A
    // move made sooner may deliver order-1 again (at least once).
    let acked = position.as_u64().unwrap();
    until(&b, "GET", "/v1/groups/billing", None, |_, info| info["checkpoint"].as_u64().unwrap() > acked);
    let (status, moved) = b.request("POST", "/v1/groups/billing/move", Some(&json!({"to": "b"}).to_string()));
    assert_eq!((status, &moved["home"]), (200, &json!("b")), "{moved}");
    a.append("order-2", &json!({"events": [{"type": "Placed", "data": {}}]}));
    let taken = until(&b, "POST", "/v1/groups/billing/members/w2/poll", Some(&poll), |status, answer| {
        status == 200 && !answer["events"].as_array().unwrap().is_empty()
    });
    assert_eq!(taken["events"][0]["event"]["stream"], "order-2", "b starts after what a acknowledged: {taken}");
    let refused = until(&a, "POST", "/v1/groups/billing/members/w3/poll", Some(&poll), |status, _| status == 409);
    assert!(refused["message"].as_str().unwrap().contains("node b"), "{refused}");

    // And back to a, with the CLI (over gRPC) on b.
    let moved = b.cli(&["--json", "group", "move", "billing", "--to", "a"]);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let moved: Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!((&moved["home"], &moved["running_here"]), (&json!("a"), &json!(false)), "{moved}");
    until(&a, "POST", "/v1/groups/billing/members/w4/poll", Some(&poll), |status, _| status == 200);
    let refused = until(&b, "POST", "/v1/groups/billing/members/w5/poll", Some(&poll), |status, _| status == 409);
    assert!(refused["message"].as_str().unwrap().contains("node a"), "{refused}");
    let empty = b.cli(&["group", "move", "billing", "--to", ""]);
    assert!(!empty.status.success(), "an empty node name is refused");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("node name"), "{empty:?}");
}

/// The member poll that takes events of group `billing`.
fn poll_body() -> String {
    json!({"max": 10, "wait_ms": 2000}).to_string()
}

#[test]
fn a_group_whose_home_stops_moves_to_a_node_that_is_up_and_stays_there() {
    let broker_data = tempfile::tempdir().unwrap();
    let broker = start_broker(broker_data.path());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let failover = ["--cluster-group-failover-s", "1"];
    let a = start_node_with(&broker, dirs[0].path(), "a", &failover);
    let b = start_node_with(&broker, dirs[1].path(), "b", &failover);
    let c = start_node_with(&broker, dirs[2].path(), "c", &failover);
    let create = json!({"name": "billing", "filter": {"category": "order"}, "start": "beginning"}).to_string();
    let (status, created) = a.request("POST", "/v1/groups", Some(&create));
    assert_eq!((status, &created["home"]), (201, &json!("a")), "{created}");
    a.append("order-1", &json!({"events": [{"type": "Placed", "data": {}}]}));
    let taken = until(&a, "POST", "/v1/groups/billing/members/w1/poll", Some(&poll_body()), |status, answer| {
        status == 200 && !answer["events"].as_array().unwrap().is_empty()
    });
    let position = taken["events"][0]["event"]["position"].clone();
    let ack = json!({"positions": [position]}).to_string();
    assert_eq!(a.request("POST", "/v1/groups/billing/members/w1/ack", Some(&ack)).0, 200);
    let acked = position.as_u64().unwrap();
    until(&b, "GET", "/v1/groups/billing", None, |status, info| {
        status == 200 && info["checkpoint"].as_u64().is_some_and(|checkpoint| checkpoint > acked)
    });
    // Nobody moves a group whose home is up.
    std::thread::sleep(Duration::from_secs(3));
    let (_, seen) = b.request("GET", "/v1/groups/billing", None);
    assert_eq!(seen["home"], "a", "{seen}");

    // a stops and leaves the nodes' Kafka group. (A node killed is dropped
    // by the brokers after their session timeout instead, which noida-db,
    // the test broker, does not enforce: its members stay listed.)
    assert_eq!(a.terminate(), Some(0), "a stops cleanly");
    b.append("order-2", &json!({"events": [{"type": "Placed", "data": {}}]}));
    // Once the delay is over, one of b and c takes the group; both agree
    // which.
    // A node is seen down once it left the nodes' group: 60 s at most.
    let minute = Duration::from_secs(60);
    let moved = until_within(minute, &b, "GET", "/v1/groups/billing", None, |status, info| {
        status == 200 && info["home"] != "a"
    });
    let heir = moved["home"].as_str().unwrap().to_string();
    assert!(heir == "b" || heir == "c", "{moved}");
    let (heir_node, other) = if heir == "b" { (&b, &c) } else { (&c, &b) };
    until_within(minute, other, "GET", "/v1/groups/billing", None, |status, info| {
        status == 200 && info["home"] == heir.as_str()
    });
    let taken = until(heir_node, "POST", "/v1/groups/billing/members/w2/poll", Some(&poll_body()), |status, answer| {
        status == 200 && !answer["events"].as_array().unwrap().is_empty()
    });
    assert_eq!(taken["events"][0]["event"]["stream"], "order-2", "the heir goes on after what a acknowledged: {taken}");
    let (status, refused) = other.request("POST", "/v1/groups/billing/members/w3/poll", Some(&poll_body()));
    assert_eq!((status, &refused["code"]), (409, &json!("group_elsewhere")), "{refused}");

    // a comes back: the group stays with the heir.
    let a = start_node_with(&broker, dirs[0].path(), "a", &failover);
    let (status, refused) = a.request("POST", "/v1/groups/billing/members/w4/poll", Some(&poll_body()));
    assert_eq!((status, &refused["code"]), (409, &json!("group_elsewhere")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains(&format!("node {heir}")), "{refused}");
    std::thread::sleep(Duration::from_secs(3));
    let (_, seen) = a.request("GET", "/v1/groups/billing", None);
    assert_eq!(seen["home"], heir.as_str(), "a home that comes back does not take its groups back: {seen}");
}

/// Polls `GET path` on `server` until `done` holds for its 200 answer
#[test]
fn fenced_writer_nodes_take_turns_and_refuse_conflicts_themselves() {
    let broker_data = tempfile::tempdir().unwrap();
    let broker = start_broker(broker_data.path());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fenced = ["--cluster-mode", "fenced-writer"];
    let a = start_node_with(&broker, a_dir.path(), "a", &fenced);
    let b = start_node_with(&broker, b_dir.path(), "b", &fenced);

    // Turns, not races: noida-db mishandles transactions a fence aborts
    // while open (docs/cluster.md).
    for n in 0..4u32 {
        let (first, second, first_name) = if n % 2 == 0 { (&a, &b, "a") } else { (&b, &a, "b") };
        let stream = format!("account-{n}");
        let (status, body) = first.append(&stream, &opening(n, first_name));
        assert_eq!(status, 200, "{stream}: {body}");
        let (status, body) = second.append(&stream, &opening(n, "z"));
        assert_eq!((status, &body["code"]), (409, &json!("wrong_expected_revision")), "{stream}: {body}");
        let (status, body) = second.append(&stream, &opening(n, first_name));
        assert_eq!((status, &body["already_written"]), (200, &json!(true)), "{stream}: {body}");
    }
    let (on_a, on_b) = all_when_caught_up(&b, &a);
    assert_eq!(on_a.len(), 4, "one opening per account");
    assert_eq!(on_a, on_b, "both nodes serve the same events at the same positions and times");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_quipu"))
        .args(["serve", "--cluster-brokers", &broker.address, "--cluster-topic", TOPIC, "--cluster-mode", "leader"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("unknown cluster mode \"leader\""), "{said}");
}
