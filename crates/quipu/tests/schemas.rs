//! The schema registry against the real `quipu serve` binary: the
//! Confluent REST subset (with Confluent's content type and error shape),
//! compatibility verdicts with every break named, modes per subject and
//! global, our gRPC API through the CLI, and the registry across a
//! restart.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use serde_json::{Value, json};

use common::Server;

const CONFLUENT: &str = "application/vnd.schemaregistry.v1+json";

fn body(schema: &Value) -> String {
    json!({ "schema": schema.to_string(), "schemaType": "JSON" }).to_string()
}

/// `OrderPlaced` version 1: a closed object with a required `id`.
fn v1() -> Value {
    json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false})
}

/// Version 2 adds an optional `note`: backward compatible in a closed model.
fn v2() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["id"],
           "properties": {"id": {"type": "string"}, "note": {"type": "string"}}})
}

/// A break: `total` required.
fn breaking() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["id", "total"],
           "properties": {"id": {"type": "string"}, "note": {"type": "string"}, "total": {"type": "integer"}}})
}

#[test]
fn the_confluent_api_registers_checks_and_refuses_with_every_break_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let register =
        |schema: &Value| server.request_typed("POST", "/subjects/OrderPlaced/versions", CONFLUENT, &body(schema));

    assert_eq!(register(&v1()), (200, json!({"id": 1})));
    // The same schema, keys in another order: the same version, nothing new.
    let reordered = json!({"required": ["id"], "additionalProperties": false, "properties": {"id": {"type": "string"}}, "type": "object"});
    assert_eq!(register(&reordered), (200, json!({"id": 1})));
    assert_eq!(register(&v2()), (200, json!({"id": 2})));

    let (status, refused) = register(&breaking());
    assert_eq!((status, refused["error_code"].as_u64()), (409, Some(409)), "{refused}");
    let message = refused["message"].as_str().expect("a message");
    assert!(message.contains("BACKWARD with version 2") && message.contains("\"total\" became required"), "{message}");
    let (status, verdict) = server.request_typed(
        "POST",
        "/compatibility/subjects/OrderPlaced/versions/latest?verbose=true",
        CONFLUENT,
        &body(&breaking()),
    );
    assert_eq!((status, &verdict["is_compatible"]), (200, &json!(false)), "{verdict}");
    assert_eq!(verdict["messages"].as_array().map(Vec::len), Some(1));

    assert_eq!(server.request("GET", "/subjects", None), (200, json!(["OrderPlaced"])));
    assert_eq!(server.request("GET", "/subjects/OrderPlaced/versions", None), (200, json!([1, 2])));
    let (status, latest) = server.request("GET", "/subjects/OrderPlaced/versions/latest", None);
    assert_eq!(
        (status, &latest["version"], &latest["id"], &latest["schemaType"]),
        (200, &json!(2), &json!(2), &json!("JSON"))
    );
    let (status, by_id) = server.request("GET", "/schemas/ids/1", None);
    assert_eq!(status, 200);
    let stored: Value = serde_json::from_str(by_id["schema"].as_str().expect("text")).expect("JSON");
    assert_eq!(stored, v1());
    let (status, found) = server.request_typed("POST", "/subjects/OrderPlaced", CONFLUENT, &body(&v2()));
    assert_eq!((status, &found["version"]), (200, &json!(2)));

    // Modes: per subject, global; NONE lets the break in.
    assert_eq!(server.request("GET", "/config", None), (200, json!({"compatibilityLevel": "BACKWARD"})));
    let (status, set) = server.request_typed("PUT", "/config/OrderPlaced", CONFLUENT, r#"{"compatibility": "none"}"#);
    assert_eq!((status, set), (200, json!({"compatibility": "NONE"})));
    assert_eq!(register(&breaking()), (200, json!({"id": 3})));
    assert_eq!(server.request("GET", "/config", None).1["compatibilityLevel"], "BACKWARD", "the global mode stays");

    for (method, path, sent, want_status, want_code) in [
        ("GET", "/subjects/Nope/versions", None, 404, 40401),
        ("GET", "/subjects/OrderPlaced/versions/9", None, 404, 40402),
        ("GET", "/subjects/OrderPlaced/versions/first", None, 422, 42202),
        ("GET", "/schemas/ids/99", None, 404, 40403),
        ("PUT", "/config", Some(r#"{"compatibility": "SIDEWAYS"}"#.to_string()), 422, 42203),
        ("POST", "/subjects/OrderPlaced/versions", Some(r#"{"schema": "{nope"}"#.to_string()), 422, 42201),
        (
            "POST",
            "/subjects/OrderPlaced/versions",
            Some(r#"{"schema": "{}", "schemaType": "AVRO"}"#.to_string()),
            422,
            42201,
        ),
        ("POST", "/subjects/OrderPlaced/versions", Some(r#"{"schema": "[1]"}"#.to_string()), 422, 42201),
    ] {
        let (status, answer) = match &sent {
            Some(sent) => server.request_typed(method, path, CONFLUENT, sent),
            None => server.request(method, path, None),
        };
        assert_eq!(
            (status, answer["error_code"].as_u64()),
            (want_status, Some(want_code)),
            "{method} {path}: {answer}"
        );
    }
    assert_eq!(
        server.request("GET", "/subjects/OrderPlaced/versions", None).1,
        json!([1, 2, 3]),
        "refusals recorded nothing"
    );

    // Everything outlives a restart.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    assert_eq!(server.request("GET", "/subjects/OrderPlaced/versions", None), (200, json!([1, 2, 3])));
    assert_eq!(server.request("GET", "/config/OrderPlaced", None).1["compatibilityLevel"], "NONE");
}

#[test]
fn the_cli_registers_checks_lists_and_sets_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let quipu = |args: &[&str]| server.cli(args);
    let registered = quipu(&["--json", "schema", "register", "OrderShipped", "--schema", &v1().to_string()]);
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    let line: Value = serde_json::from_slice(&registered.stdout).expect("a JSON line");
    assert_eq!((&line["version"], &line["id"]), (&json!(1), &json!(1)));

    let check = quipu(&["schema", "check", "OrderShipped", "--schema", &breaking().to_string()]);
    assert_eq!(check.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed.contains("breaks: BACKWARD with version 1") && printed.contains("\"total\" became required"),
        "{printed}"
    );
    let refused = quipu(&["schema", "register", "OrderShipped", "--schema", &breaking().to_string()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("incompatible:"), "{refused:?}");
    let bad = quipu(&["schema", "register", "OrderShipped", "--schema", "{nope"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_schema"), "{bad:?}");

    let set = quipu(&["--json", "schema", "compatibility", "--global", "--set", "FULL_TRANSITIVE"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let shown = quipu(&["schema", "compatibility", "OrderShipped"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), "OrderShipped: FULL_TRANSITIVE");
    let listed = quipu(&["--json", "schema", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validated_appends_must_match_their_types_latest_schema() {
    use quipu_client::{Client, Error, ExpectedRevision, NewEvent};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    client.register_schema("OrderPlaced", &v1().to_string()).await.expect("register");
    let placed = |data: Value| NewEvent::json("OrderPlaced", &data).expect("JSON");

    // Off by default: anything goes.
    client.append("order-1", ExpectedRevision::Any, vec![placed(json!({"oops": 1}))]).await.expect("unvalidated");

    client.set_validation("order", true, true).await.expect("validate the category");
    client.append("order-1", ExpectedRevision::Any, vec![placed(json!({"id": "a"}))]).await.expect("valid");
    let refused = |result: Result<quipu_client::AppendResult, Error>| match result {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("an invalid append went through: {other:?}"),
    };
    let message = refused(
        client
            .append("order-1", ExpectedRevision::Any, vec![placed(json!({"id": "b"})), placed(json!({"id": 7}))])
            .await,
    );
    assert!(
        message.contains("invalid_event") && message.contains("schema version 1") && message.contains("/id"),
        "{message}"
    );
    let message = refused(
        client.append("order-2", ExpectedRevision::Any, vec![NewEvent::new("OrderNoted", b"{}".to_vec())]).await,
    );
    assert!(message.contains("schema_missing"), "{message}");
    let message = refused(
        client.append("order-2", ExpectedRevision::Any, vec![NewEvent::new("OrderPlaced", b"not json".to_vec())]).await,
    );
    assert!(message.contains("not JSON"), "{message}");
    // An event over the store's size limit is refused for its size, before
    // its schema parses it.
    let huge = placed(json!({"id": 7, "pad": "x".repeat(1_100_000)}));
    let error = client.append("order-2", ExpectedRevision::Any, vec![huge]).await.expect_err("over the limit");
    assert!(error.to_string().contains("event_too_large"), "{error}");
    assert_eq!(
        client.stream_info("order-1").await.expect("info").last_revision,
        Some(quipu_client::Revision(1)),
        "nothing of a refused append was written"
    );
    assert_eq!(client.stream_info("order-2").await.expect("info").last_revision, None);
    client.append("invoice-1", ExpectedRevision::Any, vec![placed(json!({"id": 9}))]).await.expect("another category");

    // By type, over HTTP, and across a restart.
    let (status, scopes) = server.request("PUT", "/v1/schema-validation/types/OrderPlaced", None);
    assert_eq!((status, scopes), (200, json!({"event_types": ["OrderPlaced"], "categories": ["order"]})));
    let (status, answer) = server.append("invoice-2", &json!({"events": [{"type": "OrderPlaced", "data": {"id": 9}}]}));
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_event")), "{answer}");
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    refused(client.append("invoice-3", ExpectedRevision::Any, vec![placed(json!({"id": 9}))]).await);
    let (status, _) = server.request("DELETE", "/v1/schema-validation/types/OrderPlaced", None);
    assert_eq!(status, 200);
    client.set_validation("order", true, false).await.expect("off");
    client.append("order-3", ExpectedRevision::Any, vec![placed(json!({"id": 9}))]).await.expect("validation off");
    let (status, answer) = server.request("PUT", "/v1/schema-validation/categories/a-b", None);
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_category")));
    let unusable = json!({"type": "object", "properties": {"id": {"type": "no-such-type"}}});
    match client.register_schema("OrderPaid", &unusable.to_string()).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("not a valid JSON Schema"), "{message}"),
        other => panic!("an unusable schema: {other:?}"),
    }
}
