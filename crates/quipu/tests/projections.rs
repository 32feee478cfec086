//! End-to-end tests of projection rebuilds as the real `quipu serve`
//! binary handles them: requests recorded in `$projections`, handed to one
//! runner at a time, their progress and outcome, the categories a blocking
//! rebuild closes (across a restart), cancel, and bad input. The client
//! plays the runner here; `quipu-projection`'s tests run the real one
//! against PostgreSQL.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use quipu_client::{Client, Error, ExpectedRevision, NewEvent, Position, RebuildProgress, RebuildState, Revision};
use serde_json::json;

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

fn event(n: u64) -> NewEvent {
    NewEvent::json("ItemAdded", &json!({ "amount": n })).expect("JSON event")
}

async fn rebuild_state(client: &Client, name: &str) -> (RebuildState, Position, Position) {
    let info = client.projection_info(name).await.expect("info");
    let rebuild = info.rebuild.expect("a rebuild");
    (rebuild.state, rebuild.done, rebuild.total)
}

async fn refused(client: &Client, stream: &str) -> String {
    match client.append(stream, ExpectedRevision::Any, vec![event(1)]).await {
        Err(Error::ReplayInProgress(message)) => message,
        other => panic!("an append to {stream} during a blocking rebuild: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_rebuild_goes_to_one_runner_closes_its_category_until_done_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    for n in 0..10 {
        client.append("order-1", ExpectedRevision::Any, vec![event(n)]).await.expect("append");
    }

    let requested = client.rebuild_projection("order_totals", &["order".into()]).await.expect("request");
    let id = requested.rebuild.as_ref().expect("the rebuild").id;
    assert_eq!(requested.rebuild.as_ref().map(|r| r.state), Some(RebuildState::Requested));

    // The category is closed: refused over gRPC and HTTP, nothing written.
    let message = refused(&client, "order-1").await;
    assert!(message.contains("replay in progress") && message.contains("order_totals"), "{message}");
    let (status, body) = server.append("order-2", &json!({"events": [{"type": "ItemAdded", "data": {}}]}));
    assert_eq!((status, body["code"].as_str()), (409, Some("replay_in_progress")), "{body}");
    assert_eq!(body["category"], "order");
    assert_eq!(client.stream_info("order-1").await.expect("info").last_revision, Some(Revision(9)));
    assert_eq!(client.stream_info("order-2").await.expect("info").last_revision, None);
    client.append("customer-1", ExpectedRevision::Any, vec![event(1)]).await.expect("other categories stay open");

    // One runner takes it; another reporting meanwhile gets nothing.
    let assigned = client.report_projection("order_totals", "a", Some(Position(0)), None).await.expect("report");
    assert_eq!(assigned.map(|a| (a.id, a.block_categories)), Some((id, vec!["order".to_string()])));
    assert_eq!(client.report_projection("order_totals", "b", Some(Position(0)), None).await.expect("report"), None);
    let progress = Some((id, RebuildProgress::Running(Position(5))));
    assert!(
        client.report_projection("order_totals", "a", Some(Position(11)), progress).await.expect("report").is_some()
    );
    let info = client.projection_info("order_totals").await.expect("info");
    assert_eq!((info.runner.as_deref(), info.position), (Some("a"), Some(Position(11))));
    let rebuild = info.rebuild.expect("the rebuild");
    assert_eq!(
        (rebuild.state, rebuild.runner.as_deref(), rebuild.done),
        (RebuildState::Running, Some("a"), Position(5))
    );
    assert_eq!(rebuild.total, info.head, "progress runs to the head of the log");

    // The request and the block outlive a restart; the runner goes on.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    assert_eq!(rebuild_state(&client, "order_totals").await.0, RebuildState::Requested);
    refused(&client, "order-1").await;
    let progress = Some((id, RebuildProgress::Running(Position(8))));
    assert!(
        client.report_projection("order_totals", "a", Some(Position(11)), progress).await.expect("report").is_some()
    );
    assert_eq!(client.report_projection("order_totals", "b", None, None).await.expect("report"), None);

    // Done: recorded, the category opens, and nothing is assigned.
    let done = Some((id, RebuildProgress::Done(Position(12))));
    assert_eq!(client.report_projection("order_totals", "a", Some(Position(12)), done).await.expect("report"), None);
    assert_eq!(rebuild_state(&client, "order_totals").await, (RebuildState::Done, Position(12), Position(12)));
    client.append("order-1", ExpectedRevision::Exact(Revision(9)), vec![event(10)]).await.expect("open again");
    let (status, listed) = server.request("GET", "/v1/projections", None);
    assert_eq!(status, 200);
    assert_eq!(listed["projections"][0]["rebuild"]["state"], "done", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_rebuild_is_dropped_by_its_runner_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;

    let (status, body) = server.request("POST", "/v1/projections/order_totals/rebuild", None);
    assert_eq!(status, 202, "{body}");
    let id = body["rebuild"]["id"].as_u64().expect("an id");
    assert_eq!(body["rebuild"]["block_categories"], json!([]));
    let assigned = client.report_projection("order_totals", "a", None, None).await.expect("report");
    assert_eq!(assigned.map(|a| a.id), Some(id));

    // A second request while one runs is refused.
    match client.rebuild_projection("order_totals", &[]).await {
        Err(Error::Server { code, message }) => {
            assert_eq!(format!("{code:?}"), "FailedPrecondition");
            assert!(message.contains("rebuild_in_progress"), "{message}");
        }
        other => panic!("a second rebuild: {other:?}"),
    }
    let (status, body) = server.request("DELETE", "/v1/projections/order_totals/rebuild", None);
    assert_eq!((status, body["rebuild"]["state"].as_str()), (200, Some("cancelled")), "{body}");
    let progress = Some((id, RebuildProgress::Running(Position(3))));
    let dropped = client.report_projection("order_totals", "a", None, progress).await.expect("report");
    assert_eq!(dropped, None, "a cancelled rebuild is no longer assigned");
    assert_eq!(rebuild_state(&client, "order_totals").await.0, RebuildState::Cancelled);

    // Bad input: clear errors, nothing recorded.
    let bad = [
        ("POST", "/v1/projections/Bad-Name/rebuild", None, 400, "invalid_projection"),
        (
            "POST",
            "/v1/projections/order_totals/rebuild",
            Some(r#"{"block_categories": ["order-1"]}"#),
            400,
            "invalid_category",
        ),
        (
            "POST",
            "/v1/projections/order_totals/rebuild",
            Some(r#"{"block_categories": ["$all"]}"#),
            400,
            "invalid_category",
        ),
        ("POST", "/v1/projections/order_totals/rebuild", Some(r#"{"blocks": []}"#), 400, "invalid_json"),
        ("DELETE", "/v1/projections/order_totals/rebuild", None, 404, "no_rebuild"),
        ("GET", "/v1/projections/nope", None, 404, "projection_not_found"),
        ("POST", "/v1/projections/order_totals/report", Some(r#"{"runner": ""}"#), 400, "invalid_runner"),
        (
            "POST",
            "/v1/projections/order_totals/report",
            Some(r#"{"runner": "a", "rebuild": {"id": 1}}"#),
            400,
            "invalid_report",
        ),
    ];
    for (method, path, body, want_status, want_code) in bad {
        let (status, answer) = server.request(method, path, body);
        assert_eq!((status, answer["code"].as_str()), (want_status, Some(want_code)), "{method} {path}: {answer}");
    }
    match client.rebuild_projection("x", &["a-b".into()]).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("before its first '-'"), "{message}"),
        other => panic!("a bad category over gRPC: {other:?}"),
    }
    let listed = client.list_projections().await.expect("list");
    assert_eq!(listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["order_totals"], "nothing else recorded");
    assert_eq!(rebuild_state(&client, "order_totals").await.0, RebuildState::Cancelled);
}
