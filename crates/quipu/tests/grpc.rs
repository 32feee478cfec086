//! End-to-end tests of the gRPC API through `quipu-client` against the
//! real `quipu serve` binary on free ports of loopback, each run over both
//! transports the client speaks: HTTP/2 (`http://`) and Quipu's framed
//! TCP transport (`quipu://`, same port, same services).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::collections::HashSet;

use futures_util::StreamExt;
use quipu_client::{
    Aggregate, Append, BatchOutcome, Client, Direction, Error, Event, ExpectedRevision, Filter, NewEvent, Position,
    QueryItem, Revision, Start, SubscriptionItem,
};
use serde_json::json;

use common::Server;

/// How a test's client reaches the server.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Http2,
    Native,
}

async fn connect(server: &Server, transport: Transport) -> Client {
    let scheme = match transport {
        Transport::Http2 => "http",
        Transport::Native => "quipu",
    };
    Client::connect(format!("{scheme}://{}", server.grpc_address)).await.expect("connect")
}

/// Runs the test body `$name(transport)` once over each transport.
macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_http2() {
                super::$name(super::Transport::Http2).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_native() {
                super::$name(super::Transport::Native).await;
            }
        }
    )*};
}

over_both_transports!(
    concurrent_writers_with_one_expected_revision_one_wins_the_rest_get_the_actual,
    subscriptions_see_every_event_once_in_order_across_catch_up_and_live,
    reads_info_and_bad_input,
    atomic_appends_batches_and_retries,
    the_aggregate_helper_decides_again_on_conflict,
    appends_retried_across_a_sigkill_and_restart_are_written_exactly_once,
);

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::json(event_type, &json!({ "n": n })).expect("JSON event")
}

async fn concurrent_writers_with_one_expected_revision_one_wins_the_rest_get_the_actual(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server, transport).await;
    client
        .append("order-1", ExpectedRevision::NoStream, vec![event("Placed", 0), event("Paid", 1)])
        .await
        .expect("seed");

    let writers: Vec<_> = (0..8)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client.append("order-1", ExpectedRevision::Exact(Revision(1)), vec![event("Shipped", n)]).await
            })
        })
        .collect();
    let mut wins = 0;
    for writer in writers {
        match writer.await.expect("writer task") {
            Ok(result) => {
                wins += 1;
                assert_eq!(result.next_expected_revision(), Some(Revision(2)));
            }
            Err(Error::Conflict { conflict, message }) => {
                let stream = conflict.streams.first().expect("the conflicting stream");
                assert_eq!(
                    (stream.stream.as_str(), stream.expected, stream.actual),
                    ("order-1", ExpectedRevision::Exact(Revision(1)), Some(Revision(2)))
                );
                assert!(message.contains("order-1"), "the message names the stream: {message}");
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(client.stream_info("order-1").await.expect("info").last_revision, Some(Revision(2)));
}

/// Reads a subscription until `events` events came, past its switch to
/// live.
async fn collect(subscription: &mut quipu_client::Subscription, events: usize) -> Vec<Event> {
    let mut seen = Vec::new();
    while seen.len() < events {
        if let SubscriptionItem::Event(event) = subscription.next().await.expect("goes on").expect("no error") {
            seen.push(event);
        }
    }
    seen
}

async fn subscriptions_see_every_event_once_in_order_across_catch_up_and_live(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server, transport).await;
    let write = |client: Client, from: u64, to: u64| async move {
        for n in from..to {
            let stream = if n % 2 == 0 { format!("order-{}", n % 5) } else { format!("user-{}", n % 3) };
            client.append(stream, ExpectedRevision::Any, vec![event("Happened", n)]).await.expect("append");
        }
    };
    write(client.clone(), 0, 50).await;

    let mut all = client.subscribe(None, Start::Position(Position(0))).await.expect("subscribe to $all");
    let mut orders =
        client.subscribe(Some(Filter::Category("order".into())), Start::Position(Position(0))).await.expect("category");
    let mut one =
        client.subscribe(Some(Filter::Stream("user-1".into())), Start::Revision(Revision(3))).await.expect("stream");
    // Writers append while the subscription catches up, and again once it
    // is live, so both sides of the switch carry events.
    let mut catching_up = Some(tokio::spawn(write(client.clone(), 50, 80)));
    let (mut events, mut live_writer) = (Vec::new(), None);
    while events.len() < 120 {
        match all.next().await.expect("the subscription goes on").expect("no error") {
            SubscriptionItem::Event(event) => events.push(event),
            SubscriptionItem::CaughtUp { last_position } => {
                assert!(live_writer.is_none(), "one switch to live");
                assert_eq!(last_position, events.last().map(|e| e.position), "caught up right after the last event");
                // Events 80.. are written after the switch: they arrive live.
                let (client, catching_up) = (client.clone(), catching_up.take().expect("first switch"));
                live_writer = Some(tokio::spawn(async move {
                    catching_up.await.expect("writer");
                    write(client, 80, 120).await;
                }));
            }
        }
    }
    live_writer.expect("the subscription went live").await.expect("live writer");
    let positions: Vec<Position> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (0..120).map(Position).collect::<Vec<_>>(), "every event once, in order");
    let numbers: Vec<u64> =
        events.iter().map(|e| e.json::<serde_json::Value>().expect("JSON")["n"].as_u64().expect("n")).collect();
    assert_eq!(numbers, (0..120).collect::<Vec<_>>());

    let order_events = collect(&mut orders, 60).await;
    assert!(order_events.iter().all(|e| e.stream.starts_with("order-")));
    assert!(order_events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(order_events.iter().map(|e| e.id).collect::<HashSet<_>>().len(), 60);

    let user_1 = client.load_stream("user-1").await.expect("load user-1");
    let user_events = collect(&mut one, user_1.len() - 3).await;
    assert_eq!(user_events, user_1[3..].to_vec(), "a stream subscription from revision 3");
}

async fn reads_info_and_bad_input(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server, transport).await;
    let tagged = |n| event("Placed", n).with_tags(["vip"]);
    client.append("order-1", ExpectedRevision::NoStream, vec![tagged(0), event("Paid", 1)]).await.expect("append");
    client.append("user-1", ExpectedRevision::Any, vec![event("Registered", 2)]).await.expect("append");

    let backwards = client.read_stream("order-1", None, Direction::Backwards, 0).await.expect("read backwards");
    assert_eq!(backwards.iter().map(|e| e.revision).collect::<Vec<_>>(), [Revision(1), Revision(0)]);
    assert_eq!(client.read_all(Some(Position(1)), Direction::Forwards, 10).await.expect("all").len(), 2);
    let by = |filter| client.read_filtered(filter, None, Direction::Forwards, 10);
    assert_eq!(by(Filter::Category("user".into())).await.expect("category").len(), 1);
    assert_eq!(by(Filter::EventType("Paid".into())).await.expect("type")[0].position, Position(1));
    assert_eq!(by(Filter::Tag("vip".into())).await.expect("tag")[0].tags, ["vip"]);
    let info = client.stream_info("order-1").await.expect("info");
    assert_eq!(info.last_revision, Some(Revision(1)));
    assert_eq!(client.stream_info("order-404").await.expect("info").last_revision, None);

    assert!(matches!(client.read_stream("order-404", None, Direction::Forwards, 0).await, Err(Error::NotFound(_))));
    let invalid = [
        client.read_stream("", None, Direction::Forwards, 0).await.map(|_| ()),
        client.read_all(None, Direction::Forwards, 1_000_000).await.map(|_| ()),
        by(Filter::Stream("order-1".into())).await.map(|_| ()),
        client.append("bad\nname", ExpectedRevision::Any, vec![event("Placed", 9)]).await.map(|_| ()),
        client.append("order-2", ExpectedRevision::Any, vec![NewEvent::new("", "{}")]).await.map(|_| ()),
        client
            .append("order-2", ExpectedRevision::Any, vec![NewEvent::new("Big", vec![b'x'; 2 << 20])])
            .await
            .map(|_| ()),
        client.subscribe(Some(Filter::Category("order".into())), Start::Revision(Revision(0))).await.map(|_| ()),
    ];
    for (case, result) in invalid.into_iter().enumerate() {
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "case {case}: {result:?}");
    }
    assert_eq!(client.read_all(None, Direction::Forwards, 100).await.expect("all").len(), 3, "bad input wrote nothing");
}

async fn atomic_appends_batches_and_retries(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server, transport).await;

    // A retry with the same ids (say, after a lost reply) writes nothing.
    let events = vec![event("Placed", 0), event("Paid", 1)];
    let first = client.append("order-1", ExpectedRevision::NoStream, events.clone()).await.expect("append");
    let again = client.append("order-1", ExpectedRevision::NoStream, events).await.expect("retry");
    assert!(!first.already_written && again.already_written);
    assert_eq!((again.first_position, again.last_position), (first.first_position, first.last_position));

    // Two streams at once, under a DCB condition on the "vip" tag.
    let vip = QueryItem { types: vec![], tags: vec!["vip".into()] };
    let transfer = Append::new()
        .stream("account-a", ExpectedRevision::NoStream, vec![event("Debited", 2).with_tags(["vip"])])
        .stream("account-b", ExpectedRevision::NoStream, vec![event("Credited", 3)])
        .condition(vec![vip.clone()], None);
    let written = client.append_atomic(&transfer).await.expect("atomic append");
    assert_eq!(written.streams.len(), 2);
    let refused = Append::new()
        .stream("account-c", ExpectedRevision::Any, vec![event("Opened", 4)])
        .condition(vec![vip], Some(Position(1)));
    let conflict = client.append_atomic(&refused).await.expect_err("the condition fails");
    assert_eq!(conflict.conflict().and_then(|c| c.condition_position), Some(Position(2)));

    // A batch: each append is its own transaction, outcomes in order.
    let batch = [
        Append::new().stream("order-2", ExpectedRevision::NoStream, vec![event("Placed", 5)]),
        Append::new().stream("order-1", ExpectedRevision::Exact(Revision(0)), vec![event("Late", 6)]),
        Append::new().stream("bad name\t", ExpectedRevision::Any, vec![event("Placed", 7)]),
        Append::new().stream("order-2", ExpectedRevision::Exact(Revision(0)), vec![event("Paid", 8)]),
    ];
    let outcomes = client.append_batch(&batch).await.expect("batch");
    assert!(matches!(&outcomes[0], BatchOutcome::Written(r) if r.next_expected_revision() == Some(Revision(0))));
    assert!(
        matches!(&outcomes[1], BatchOutcome::Refused(e) if e.conflict().and_then(|c| c.streams[0].actual) == Some(Revision(1)))
    );
    assert!(matches!(&outcomes[2], BatchOutcome::Refused(Error::InvalidArgument(_))));
    assert!(matches!(&outcomes[3], BatchOutcome::Written(r) if r.next_expected_revision() == Some(Revision(1))));
    assert_eq!(client.read_all(None, Direction::Forwards, 100).await.expect("all").len(), 6);
}

/// A counter folded from `Added` events.
#[derive(Default)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    fn apply(&mut self, event: &Event) -> Result<(), Error> {
        self.total += event.json::<serde_json::Value>()?["n"].as_u64().unwrap_or(0);
        Ok(())
    }
}

async fn the_aggregate_helper_decides_again_on_conflict(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server, transport).await;
    // Eight racing commands, each adding 1 unless the counter reached 5:
    // every decision is made on fresh state, so exactly 5 are added.
    let commands: Vec<_> =
        (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .execute("counter-1", |counter: &Counter| {
                            if counter.total >= 5 { Err("full") } else { Ok(vec![event("Added", 1)]) }
                        })
                        .await
                })
            })
            .collect();
    let mut added = 0;
    for command in commands {
        match command.await.expect("command task") {
            Ok(executed) => {
                assert!(executed.result.is_some());
                added += 1;
            }
            Err(quipu_client::ExecuteError::Rejected("full")) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(added, 5);
    let loaded = client.load::<Counter>("counter-1").await.expect("load");
    assert_eq!((loaded.state.total, loaded.last_revision), (5, Some(Revision(4))));
}

/// A free port of loopback (bound, then released for the server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

fn start_on(data_dir: &std::path::Path, grpc_port: u16) -> Server {
    let mut command = common::serve_command();
    command
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}"), "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    Server::spawn(command)
}

async fn appends_retried_across_a_sigkill_and_restart_are_written_exactly_once(transport: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = start_on(dir.path(), port);
    let retry = quipu_client::RetryPolicy {
        attempts: 200,
        backoff_initial: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(100),
    };
    let client = connect(&server, transport).await.with_retry(retry);
    let appends = 300;
    // A subscription opened before the crash resumes after it.
    let mut follower = client
        .subscribe(Some(Filter::Stream("ledger-1".into())), Start::Revision(Revision(0)))
        .await
        .expect("subscribe");
    let writer = tokio::spawn({
        let client = client.clone();
        async move {
            let mut already_written = 0;
            for n in 0..appends {
                let result = client.append("ledger-1", ExpectedRevision::Any, vec![event("Entry", n)]).await;
                already_written += u32::from(result.expect("retried until the server is back").already_written);
            }
            already_written
        }
    });
    // Kill the server while the writer runs, and bring it back.
    while client.stream_info("ledger-1").await.expect("info").last_revision.is_none_or(|r| r < Revision(50)) {
        tokio::task::yield_now().await;
    }
    server.signal("KILL");
    assert_eq!(server.wait(), None, "SIGKILL ends the server without an exit code");
    let _server = start_on(dir.path(), port);
    let already_written = writer.await.expect("writer");
    let events = client.load_stream("ledger-1").await.expect("load");
    let numbers: Vec<u64> =
        events.iter().map(|e| e.json::<serde_json::Value>().expect("JSON")["n"].as_u64().expect("n")).collect();
    assert_eq!(
        numbers,
        (0..appends).collect::<Vec<_>>(),
        "every append once, in order ({already_written} answered by a retry)"
    );
    let followed = collect(&mut follower, events.len()).await;
    assert_eq!(followed, events, "the subscription saw every event once across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_client_refuses_an_address_where_no_quipu_server_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    // The HTTP/JSON port answers, but not as the native door.
    match Client::connect(format!("quipu://{}", server.address)).await {
        Err(Error::Unavailable(message)) => assert!(message.contains("not"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(Client::connect("quipu://127.0.0.1:1").await, Err(Error::Unavailable(_))));
}
