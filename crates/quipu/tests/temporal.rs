//! Temporal reads against the real `quipu serve` binary: a stream, `$all`
//! and a category as they stood at every position, at commit times, and
//! (streams) at revisions, each equal to a replay of the log cut at that
//! point; the aggregate helper's "state as of"; HTTP and CLI forms; and
//! bad bounds.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use quipu_client::{
    Aggregate, AsOf, Client, Direction, Error, Event, ExpectedRevision, Filter, NewEvent, Position, Revision,
};
use serde_json::json;

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

/// Sum of `amount` over a stream.
#[derive(Default, Debug, PartialEq)]
struct Total(i64);

impl Aggregate for Total {
    fn apply(&mut self, event: &Event) -> Result<(), Error> {
        self.0 += event.json::<serde_json::Value>()?["amount"].as_i64().unwrap_or(0);
        Ok(())
    }
}

/// Writes 60 single-event appends over three streams of two categories,
/// each its own commit; returns `$all` as read back.
async fn write(client: &Client) -> Vec<Event> {
    for n in 0..60u64 {
        let stream = ["order-1", "order-2", "invoice-1"][(n * 7 % 3) as usize];
        let event = NewEvent::json("Changed", &json!({ "amount": n })).expect("JSON");
        client.append(stream, ExpectedRevision::Any, vec![event]).await.expect("append");
    }
    client.read_all(None, Direction::Forwards, 1000).await.expect("read $all")
}

fn positions(events: &[Event]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_as_of_every_point_equal_the_log_cut_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let all = write(&client).await;

    for cut in &all {
        let before = |e: &&Event| e.position <= cut.position;
        let want_all: Vec<Position> = all.iter().filter(before).map(|e| e.position).collect();
        let at_position = Some(AsOf::Position(cut.position));
        let got = client.read_all_as_of(None, Direction::Forwards, 1000, at_position).await.expect("read");
        assert_eq!(positions(&got), want_all, "$all as of position {}", cut.position);
        let at_time = Some(AsOf::Time(cut.recorded_at_us));
        let got = client.read_all_as_of(None, Direction::Backwards, 3, at_time).await.expect("read");
        let want_time: Vec<Position> =
            all.iter().rev().filter(|e| e.recorded_at_us <= cut.recorded_at_us).take(3).map(|e| e.position).collect();
        assert_eq!(positions(&got), want_time, "$all backwards as of time {}", cut.recorded_at_us);
        let orders = Filter::Category("order".into());
        let got = client.read_filtered_as_of(orders, None, Direction::Forwards, 1000, at_position).await.expect("read");
        let want: Vec<Position> =
            all.iter().filter(before).filter(|e| e.stream.starts_with("order-")).map(|e| e.position).collect();
        assert_eq!(positions(&got), want, "category as of position {}", cut.position);

        for stream in ["order-1", "order-2", "invoice-1"] {
            let want: Vec<&Event> = all.iter().filter(before).filter(|e| e.stream == stream).collect();
            let loaded = client.load_as_of::<Total>(stream, at_position).await.expect("load");
            let total: i64 =
                want.iter().map(|e| e.json::<serde_json::Value>().expect("JSON")["amount"].as_i64().expect("n")).sum();
            assert_eq!(
                (loaded.state, loaded.last_revision),
                (Total(total), want.last().map(|e| e.revision)),
                "{stream}"
            );
            let by_time = client.load_stream_as_of(stream, at_time).await.expect("load");
            assert_eq!(positions(&by_time), want.iter().map(|e| e.position).collect::<Vec<_>>(), "{stream} by time");
        }
    }
    let order = client.load_stream("order-1").await.expect("load");
    for cut in &order {
        let got = client.load_stream_as_of("order-1", Some(AsOf::Revision(cut.revision))).await.expect("load");
        assert_eq!(got.len() as u64, cut.revision.0 + 1, "order-1 as of revision {}", cut.revision);
        let back = client
            .read_stream_as_of("order-1", None, Direction::Backwards, 1, Some(AsOf::Revision(cut.revision)))
            .await
            .expect("read");
        assert_eq!(back.first().map(|e| e.revision), Some(cut.revision), "backwards starts at the moment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_reads_over_http_and_the_cli_and_bad_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let all = write(&client).await;
    let first_order = all.iter().find(|e| e.stream == "order-1").expect("an order");

    // Before the stream's first event it did not exist.
    let before = first_order.position.0.checked_sub(1);
    if let Some(before) = before {
        let (status, body) = server.request("GET", &format!("/v1/streams/order-1?to_position={before}"), None);
        assert_eq!((status, body["code"].as_str()), (404, Some("stream_not_found")), "{body}");
    }
    let cut = &all[30];
    let (status, body) =
        server.request("GET", &format!("/v1/streams/order-2?as_of_us={}&limit=1000", cut.recorded_at_us), None);
    assert_eq!(status, 200, "{body}");
    let want = all.iter().filter(|e| e.stream == "order-2" && e.position <= cut.position).count();
    assert_eq!(body["events"].as_array().map(Vec::len), Some(want));

    for (path, code) in [
        ("/v1/all?to_revision=3", "invalid_as_of"),
        ("/v1/streams/order-1?to_revision=1&to_position=3", "invalid_as_of"),
        ("/v1/categories/order?as_of_us=1&to_position=2", "invalid_as_of"),
    ] {
        let (status, body) = server.request("GET", path, None);
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{path}: {body}");
    }
    match client.read_all_as_of(None, Direction::Forwards, 10, Some(AsOf::Revision(Revision(1)))).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("one stream"), "{message}"),
        other => panic!("a revision bound on $all: {other:?}"),
    }

    // The CLI takes RFC 3339.
    let seconds = cut.recorded_at_us / 1_000_000 + 1;
    let time = humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds)).to_string();
    let output = server.cli(&["--json", "read", "--all", "--as-of", &time]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = String::from_utf8_lossy(&output.stdout).lines().count();
    let want = all.iter().filter(|e| e.recorded_at_us <= seconds * 1_000_000).count().min(100);
    assert_eq!(lines, want, "events committed by {time}");
    let bad = server.cli(&["read", "--all", "--as-of", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither RFC 3339"), "{bad:?}");
}
