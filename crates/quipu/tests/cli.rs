//! End-to-end tests of the client commands (`quipu append|read|subscribe|
//! info`) against the real `quipu serve`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::process::{Command, Output};

use serde_json::Value;

use common::Server;

/// Runs `quipu --server <server> <args>`.
fn quipu(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quipu"))
        .args(["--server", &format!("http://{}", server.grpc_address)])
        .args(args)
        .env_remove("QUIPU_SERVER")
        .output()
        .expect("run quipu")
}

/// Stdout of a command that must succeed, as text.
fn ok(output: Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "exit {:?}: {stdout} {stderr}", output.status);
    stdout.into_owned()
}

/// Each stdout line as JSON.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))).collect()
}

#[test]
fn append_read_info_and_subscribe_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let id = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01";
    let placed = ["append", "order-1", "--type", "Placed", "--data", r#"{"total": 12}"#, "--expected", "no_stream"];
    let written = json_lines(&ok(quipu(&server, &[&placed[..], &["--id", id, "--json"]].concat())));
    assert_eq!(written[0]["next_expected_revision"], 0);
    // The same id again is a no-op, and says so.
    let again = json_lines(&ok(quipu(&server, &[&placed[..], &["--id", id, "--json"]].concat())));
    assert_eq!(again[0]["already_written"], true);
    ok(quipu(&server, &["append", "order-1", "--type", "Paid", "--expected", "0", "--tag", "vip"]));

    // A stale expected revision: exit 1, the actual revision in the message.
    let stale = quipu(&server, &["append", "order-1", "--type", "Paid", "--expected", "0"]);
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr.contains("order-1 is at revision 1"), "{stderr}");
    let bad = quipu(&server, &["append", "order-1", "--type", "Paid", "--expected", "maybe"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown expected revision");

    let events = json_lines(&ok(quipu(&server, &["read", "order-1", "--json"])));
    assert_eq!(events.len(), 2);
    assert_eq!((&events[0]["id"], &events[0]["data"]["total"]), (&Value::from(id), &Value::from(12)));
    assert_eq!(events[1]["tags"][0], "vip");
    let table = ok(quipu(&server, &["read", "--all"]));
    assert!(table.lines().next().is_some_and(|header| header.contains("POSITION")), "{table}");
    assert_eq!(table.lines().count(), 3, "a header and two rows: {table}");
    assert_eq!(json_lines(&ok(quipu(&server, &["read", "--tag", "vip", "--json"]))).len(), 1);

    let info = json_lines(&ok(quipu(&server, &["info", "order-1", "--json"])));
    assert_eq!((&info[0]["exists"], &info[0]["last_revision"]), (&Value::from(true), &Value::from(1)));
    let missing = quipu(&server, &["read", "order-404"]);
    assert_eq!(missing.status.code(), Some(1));

    let followed = json_lines(&ok(quipu(&server, &["subscribe", "--category", "order", "--count", "2", "--json"])));
    let positions: Vec<&Value> = followed.iter().filter_map(|line| line.get("position")).collect();
    assert_eq!(positions, [&Value::from(0), &Value::from(1)]);
}
