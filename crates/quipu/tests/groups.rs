//! End-to-end tests of consumer groups through `quipu-client` against the
//! real `quipu serve` binary: per-stream order across a rebalance under
//! concurrent appends, parking and replay of a poison event, parked counts
//! kept across a restart, the in-flight bound, checkpoints across a
//! restart and a SIGKILL, and bad input.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use quipu_client::{
    Client, Error, ExpectedRevision, GroupConsumer, GroupEvent, GroupFilter, GroupStart, GroupTuning, NackAction,
    NewEvent, Position, Revision,
};
use serde_json::json;

use common::Server;

/// Longest wait for a delivery that must come.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

/// A server over a fresh directory with one group `name` on every event
/// from the beginning, default tuning, and a client of it.
async fn serve_with_group(name: &str) -> (tempfile::TempDir, Server, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    client
        .create_group(name, GroupFilter::default(), GroupStart::Beginning, GroupTuning::default())
        .await
        .expect("create");
    (dir, server, client)
}

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::json(event_type, &json!({ "n": n })).expect("JSON event")
}

async fn next(consumer: &mut GroupConsumer) -> GroupEvent {
    tokio::time::timeout(DELIVERY_WAIT, consumer.next())
        .await
        .expect("a delivery within the wait")
        .expect("the group goes on")
        .expect("a delivery, not an error")
}

fn fast_retries(max_retries: u32) -> GroupTuning {
    GroupTuning {
        max_retries: Some(max_retries),
        backoff_base_ms: Some(10),
        backoff_max_ms: Some(50),
        ..GroupTuning::default()
    }
}

/// Appends `rounds` events to each of `streams` streams `order-N` from
/// one task per stream.
async fn write_streams(client: &Client, streams: u64, rounds: u64) {
    let writers: Vec<_> = (0..streams)
        .map(|s| {
            let client = client.clone();
            tokio::spawn(async move {
                for r in 0..rounds {
                    let expected =
                        if r == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(r - 1)) };
                    client.append(format!("order-{s}"), expected, vec![event("Placed", r)]).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_keep_each_streams_order_across_a_rebalance_under_concurrent_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let filter = GroupFilter { category: Some("order".into()), ..GroupFilter::default() };
    client.create_group("billing", filter, GroupStart::Beginning, GroupTuning::default()).await.expect("create");
    client.append("invoice-1", ExpectedRevision::Any, vec![event("Sent", 0)]).await.expect("other category");

    let (streams, rounds) = (12u64, 25u64);
    let writing = {
        let client = client.clone();
        tokio::spawn(async move { write_streams(&client, streams, rounds).await })
    };
    // Member a consumes alone, then b joins, then a leaves: each handled
    // event is recorded as it is acknowledged.
    let mut handled: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut a = client.consume_group("billing", "a", 5).await.expect("a joins");
    let mut b: Option<GroupConsumer> = None;
    let total = streams * rounds;
    let mut members_seen = HashSet::new();
    for n in 0..total {
        if n == total / 3 {
            b = Some(client.consume_group("billing", "b", 5).await.expect("b joins"));
        }
        if n == 2 * total / 3 {
            a.leave().await;
            a = client.consume_group("billing", "c", 5).await.expect("c joins");
        }
        let (member, delivery) = tokio::select! {
            d = next(&mut a) => ("a", d),
            d = async { match b.as_mut() { Some(b) => next(b).await, None => std::future::pending().await } } => ("b", d),
        };
        members_seen.insert(member);
        let event = &delivery.event;
        assert!(event.stream.starts_with("order-"), "only the category: {}", event.stream);
        handled.entry(event.stream.clone()).or_default().push(event.revision.0);
        match member {
            "a" => a.ack(event.position),
            _ => b.as_ref().expect("b joined").ack(event.position),
        }
    }
    writing.await.expect("writers");
    assert_eq!(members_seen.len(), 2, "both members handled events");
    assert_eq!(handled.len() as u64, streams);
    for (stream, revisions) in &handled {
        assert_eq!(revisions, &(0..rounds).collect::<Vec<_>>(), "{stream}: every event once, in order");
    }
    let info = wait_for_checkpoint(&client, "billing", total).await;
    assert_eq!((info.in_flight, info.buffered), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_drops_mid_stream_hands_its_events_to_the_others_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let tuning = GroupTuning { max_retries: Some(3), ..fast_retries(3) };
    client.create_group("ship", GroupFilter::default(), GroupStart::Beginning, tuning).await.expect("create");
    let (streams, rounds) = (8u64, 30u64);
    let writing = {
        let client = client.clone();
        tokio::spawn(async move { write_streams(&client, streams, rounds).await })
    };
    // a handles some events, then its connection breaks while it holds
    // others it never acknowledged; b, there all along, must get those
    // again and everything after, each stream still in order.
    let mut a = client.consume_group("ship", "a", 10).await.expect("a joins");
    let mut b = client.consume_group("ship", "b", 10).await.expect("b joins");
    let mut handled: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut a_handled = 0;
    while a_handled < 20 {
        tokio::select! {
            d = next(&mut a) => { record(&mut handled, &d.event); a.ack(d.event.position); a_handled += 1; }
            d = next(&mut b) => { record(&mut handled, &d.event); b.ack(d.event.position); }
        }
    }
    // a takes what it is given next and is dropped without answering: its
    // acknowledgements still arrive, the event it holds counts as failed.
    let held = next(&mut a).await.event.position;
    drop(a);
    let mut redelivered = false;
    let total = streams * rounds;
    while handled.values().map(|r| r.len() as u64).sum::<u64>() < total {
        let delivery = next(&mut b).await;
        redelivered |= delivery.event.position == held && delivery.retries == 1;
        record(&mut handled, &delivery.event);
        b.ack(delivery.event.position);
    }
    writing.await.expect("writers");
    assert!(redelivered, "the event a held came to b as a retry");
    for (stream, revisions) in &handled {
        assert_eq!(revisions, &(0..rounds).collect::<Vec<_>>(), "{stream}: every event once, in order");
    }
    let info = wait_for_checkpoint(&client, "ship", total).await;
    assert_eq!(info.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["b"], "a is gone");
}

fn record(handled: &mut BTreeMap<String, Vec<u64>>, event: &quipu_client::Event) {
    handled.entry(event.stream.clone()).or_default().push(event.revision.0);
}

/// Waits until group `name` has nothing buffered or out and its
/// checkpoint is at least `at_least` (positions count system events too,
/// so a group that finished `n` events has a checkpoint of at least `n`).
async fn wait_for_checkpoint(client: &Client, name: &str, at_least: u64) -> quipu_client::GroupInfo {
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    loop {
        let info = client.group_info(name).await.expect("group info");
        if info.buffered == 0 && info.in_flight == 0 && info.checkpoint >= Position(at_least) {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "group never finished: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_after_its_retries_while_the_rest_flow_and_can_be_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    client
        .create_group("mailer", GroupFilter::default(), GroupStart::Beginning, fast_retries(2))
        .await
        .expect("create");
    for n in 0..10 {
        let event_type = if n == 4 { "Poison" } else { "Fine" };
        client
            .append(format!("user-{n}"), ExpectedRevision::NoStream, vec![event(event_type, n)])
            .await
            .expect("append");
    }
    // The poison stream's next event waits behind it.
    client.append("user-4", ExpectedRevision::Exact(Revision(0)), vec![event("Fine", 40)]).await.expect("append");

    let mut consumer = client.consume_group("mailer", "m", 10).await.expect("join");
    let mut fine = Vec::new();
    let mut poison_attempts = Vec::new();
    while fine.len() < 10 {
        let delivery = next(&mut consumer).await;
        if delivery.event.event_type == "Poison" {
            poison_attempts.push(delivery.retries);
            consumer.nack(delivery.event.position, NackAction::Retry, "cannot send this one");
        } else {
            fine.push((delivery.event.stream.clone(), delivery.event.revision));
            consumer.ack(delivery.event.position);
        }
    }
    assert_eq!(poison_attempts, vec![0, 1, 2], "first try and two retries, then parked");
    let user_4: Vec<Revision> = fine.iter().filter(|(s, _)| s == "user-4").map(|(_, r)| *r).collect();
    assert_eq!(user_4, vec![Revision(1)], "user-4's next event came after the park");

    let info = wait_for_checkpoint(&client, "mailer", 11).await;
    assert_eq!(info.parked, 1);
    let parked =
        client.read_stream(&info.parked_stream, None, quipu_client::Direction::Forwards, 10).await.expect("parked");
    assert_eq!(parked.len(), 1);
    let record: serde_json::Value = serde_json::from_slice(&parked[0].data).expect("parked record JSON");
    assert_eq!((record["stream"].as_str(), record["revision"].as_u64()), (Some("user-4"), Some(0)));
    assert!(record["reason"].as_str().is_some_and(|r| r.contains("cannot send this one")), "{record}");

    assert_eq!(client.replay_parked("mailer").await.expect("replay"), 1);
    let info = client.group_info("mailer").await.expect("info");
    assert_eq!((info.parked, info.parking), (0, 0), "a replay asked for the one parked record");
    let again = next(&mut consumer).await;
    assert_eq!((again.event.event_type.as_str(), again.retries), ("Poison", 0));
    consumer.ack(again.event.position);
    assert_eq!(client.replay_parked("mailer").await.expect("nothing left"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_holds_no_more_than_its_bound_and_never_gets_system_streams() {
    let (_dir, _server, client) = serve_with_group("audit").await;
    for n in 0..10 {
        client.append(format!("item-{n}"), ExpectedRevision::NoStream, vec![event("Made", n)]).await.expect("append");
    }
    let mut consumer = client.consume_group("audit", "m", 3).await.expect("join");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await.event.position);
    }
    let info = client.group_info("audit").await.expect("info");
    let member = info.members.first().expect("one member");
    assert_eq!((member.in_flight, member.max_in_flight), (3, 3));
    assert_eq!(info.in_flight, 3);
    consumer.ack(held[0]);
    let fourth = next(&mut consumer).await;
    assert!(!held.contains(&fourth.event.position));
    for position in held.into_iter().skip(1).chain([fourth.event.position]) {
        consumer.ack(position);
    }
    for _ in 4..10 {
        let delivery = next(&mut consumer).await;
        assert!(!delivery.event.stream.starts_with('$'), "a system stream was delivered");
        consumer.ack(delivery.event.position);
    }
    // Checkpoints were written to $checkpoint-audit meanwhile; none comes.
    let info = wait_for_checkpoint(&client, "audit", 10).await;
    assert_eq!(info.members[0].acked, 10);

    // Lowering the group's maximum binds the member already joined.
    let tuning = GroupTuning { max_in_flight: Some(1), ..GroupTuning::default() };
    client.update_group("audit", tuning).await.expect("update");
    for n in 10..13 {
        client.append(format!("item-{n}"), ExpectedRevision::NoStream, vec![event("Made", n)]).await.expect("append");
    }
    let first = next(&mut consumer).await;
    let info = client.group_info("audit").await.expect("info");
    assert_eq!((info.members[0].in_flight, info.members[0].max_in_flight), (1, 1), "one at a time now");
    consumer.ack(first.event.position);
    for _ in 11..13 {
        let delivery = next(&mut consumer).await;
        consumer.ack(delivery.event.position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_survives_a_restart_and_a_kill_loses_nothing() {
    let (dir, server, client) = serve_with_group("ledger").await;
    for n in 0..20 {
        client.append(format!("acct-{n}"), ExpectedRevision::NoStream, vec![event("Opened", n)]).await.expect("append");
    }
    let mut consumer = client.consume_group("ledger", "m", 100).await.expect("join");
    let mut first = HashSet::new();
    for _ in 0..10 {
        let delivery = next(&mut consumer).await;
        first.insert(delivery.event.position);
        consumer.ack(delivery.event.position);
    }
    let last_first = first.iter().copied().max().expect("ten positions");
    wait_until(&client, "ledger", |info| info.checkpoint > last_first).await;
    consumer.leave().await;
    // A clean stop writes the last checkpoint; the restart resumes there.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let info = client.group_info("ledger").await.expect("the group survives");
    assert!(info.checkpoint > last_first, "{info:?}");
    let mut consumer = client.consume_group("ledger", "m", 100).await.expect("join again");
    let mut rest = HashSet::new();
    while rest.len() < 10 {
        let delivery = next(&mut consumer).await;
        assert!(!first.contains(&delivery.event.position), "an acknowledged event came again after a clean stop");
        rest.insert(delivery.event.position);
        consumer.ack(delivery.event.position);
    }
    // Ten more, acknowledged, then SIGKILL: at least once means every
    // event acknowledged since the last checkpoint written comes back.
    for n in 20..30 {
        client.append(format!("acct-{n}"), ExpectedRevision::NoStream, vec![event("Opened", n)]).await.expect("append");
    }
    let mut acked: Vec<Position> = rest.iter().copied().collect();
    for _ in 0..10 {
        let delivery = next(&mut consumer).await;
        acked.push(delivery.event.position);
        consumer.ack(delivery.event.position);
    }
    consumer.leave().await;
    server.signal("KILL");
    let _ = server.wait();
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let info = client.group_info("ledger").await.expect("the group survives a kill");
    let mut consumer = client.consume_group("ledger", "m", 100).await.expect("join after the kill");
    let mut expected: Vec<Position> = acked.iter().copied().filter(|p| *p >= info.checkpoint).collect();
    let mut redelivered = Vec::new();
    for _ in 0..expected.len() {
        let delivery = next(&mut consumer).await;
        redelivered.push(delivery.event.position);
        consumer.ack(delivery.event.position);
    }
    redelivered.sort_unstable();
    expected.sort_unstable();
    assert_eq!(redelivered, expected, "every event after the checkpoint comes again");
    let last = acked.iter().copied().max().expect("ten positions");
    wait_until(&client, "ledger", |info| info.checkpoint > last && info.in_flight == 0).await;
}

async fn wait_until(client: &Client, name: &str, done: impl Fn(&quipu_client::GroupInfo) -> bool) {
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    loop {
        let info = client.group_info(name).await.expect("group info");
        if done(&info) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "group never got there: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_stays_counted_across_a_restart_until_a_replay_asks_for_it() {
    let (dir, server, client) = serve_with_group("audit").await;
    client.append("acct-1", ExpectedRevision::NoStream, vec![event("Opened", 1)]).await.expect("append");
    let mut consumer = client.consume_group("audit", "m", 10).await.expect("join");
    let delivery = next(&mut consumer).await;
    consumer.nack(delivery.event.position, NackAction::Park, "looks wrong");
    // Until its park record is durable the event is out (parking), so a
    // reader never sees it neither out nor parked.
    wait_until(&client, "audit", |info| {
        assert!(info.in_flight + info.parking + info.parked >= 1, "the event vanished from the counts: {info:?}");
        info.parked == 1 && info.parking == 0
    })
    .await;
    consumer.leave().await;
    assert_eq!(server.terminate(), Some(0));

    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let info = client.group_info("audit").await.expect("the group survives");
    assert_eq!((info.parked, info.parking, info.in_flight), (1, 0, 0), "the park is kept in its stream: {info:?}");
    assert_eq!(client.replay_parked("audit").await.expect("replay"), 1);
    assert_eq!(client.group_info("audit").await.expect("info").parked, 0, "the replay asked for it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    client.create_group("g", GroupFilter::default(), GroupStart::End, GroupTuning::default()).await.expect("create");

    let exists = client.create_group("g", GroupFilter::default(), GroupStart::End, GroupTuning::default()).await;
    assert!(
        matches!(&exists, Err(Error::Server { code, message }) if format!("{code:?}") == "AlreadyExists" && message.contains("\"g\"")),
        "{exists:?}"
    );
    let bad_tuning = GroupTuning { max_in_flight: Some(0), ..GroupTuning::default() };
    let cases: Vec<(&str, GroupFilter, GroupTuning, &str)> = vec![
        ("$sys", GroupFilter::default(), GroupTuning::default(), "reserved"),
        ("h", GroupFilter::default(), bad_tuning, "max_in_flight"),
        (
            "h",
            GroupFilter { category: Some("$all".into()), ..GroupFilter::default() },
            GroupTuning::default(),
            "category",
        ),
        (
            "h",
            GroupFilter { event_types: vec![String::new()], ..GroupFilter::default() },
            GroupTuning::default(),
            "empty",
        ),
    ];
    for (name, filter, tuning, words) in cases {
        match client.create_group(name, filter, GroupStart::Beginning, tuning).await {
            Err(Error::InvalidArgument(message)) => assert!(message.contains(words), "{message:?} lacks {words:?}"),
            other => panic!("{name}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(matches!(client.group_info("nope").await, Err(Error::NotFound(_))));
    assert!(matches!(client.consume_group("nope", "m", 0).await, Err(Error::NotFound(_))));
    assert!(matches!(client.update_group("g", bad_tuning).await, Err(Error::InvalidArgument(_))));
    let names: Vec<String> = client.list_groups().await.expect("list").into_iter().map(|g| g.name).collect();
    assert_eq!(names, vec!["g".to_string()], "nothing else was created");
    assert_eq!(client.group_info("g").await.expect("info").max_in_flight, 100, "the bad update changed nothing");

    let mut consumer = client.consume_group("g", "m", 0).await.expect("join");
    client.delete_group("g").await.expect("delete");
    let ended = tokio::time::timeout(DELIVERY_WAIT, consumer.next()).await.expect("the stream ends");
    assert!(ended.is_none(), "deleting the group ends its members' streams");
    assert!(client.list_groups().await.expect("list").is_empty());
    assert!(matches!(client.delete_group("g").await, Err(Error::NotFound(_))));
}

#[test]
fn groups_are_managed_over_http_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let create = r#"{"name": "h", "filter": {"category": "order"}, "start": "end", "tuning": {"max_retries": 3}}"#;
    let (status, body) = server.request("POST", "/v1/groups", Some(create));
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["name"].as_str(), body["max_retries"].as_u64()), (Some("h"), Some(3)));
    assert_eq!(body["filter"]["category"].as_str(), Some("order"));
    assert_eq!(body["parked_stream"].as_str(), Some("$parked-h"));

    let (status, body) = server.request("POST", "/v1/groups", Some(create));
    assert_eq!((status, body["code"].as_str()), (409, Some("group_exists")), "{body}");
    let bad: [(&str, &str); 4] = [
        (r#"{"name": "x", "tuning": {"max_in_flight": 0}}"#, "max_in_flight"),
        (r#"{"name": "x", "filter": {"bogus": 1}}"#, "bogus"),
        (r#"{"name": "$x"}"#, "reserved"),
        (r#"{"name": "x", "start": "yesterday"}"#, "yesterday"),
    ];
    for (request, words) in bad {
        let (status, body) = server.request("POST", "/v1/groups", Some(request));
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(words)), "{request}: {body}");
    }
    let (status, body) = server.request("GET", "/v1/groups", None);
    assert_eq!(status, 200);
    let names: Vec<&str> =
        body["groups"].as_array().expect("groups").iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, vec!["h"], "the bad requests created nothing");

    let (status, body) = server.request("PATCH", "/v1/groups/h", Some(r#"{"max_in_flight": 7}"#));
    assert_eq!(
        (status, body["max_in_flight"].as_u64(), body["max_retries"].as_u64()),
        (200, Some(7), Some(3)),
        "{body}"
    );
    let (status, body) = server.request("PATCH", "/v1/groups/h", Some(r#"{"max_retries": 5000}"#));
    assert_eq!((status, body["field"].as_str()), (400, Some("max_retries")), "{body}");
    let (status, body) = server.request("GET", "/v1/groups/nope", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("group_not_found")));
    let (status, body) = server.request("POST", "/v1/groups/h/replay-parked", None);
    assert_eq!((status, body["scheduled"].as_u64()), (200, Some(0)), "{body}");
    let (status, _) = server.request("DELETE", "/v1/groups/h", None);
    assert_eq!(status, 200);
    let (status, _) = server.request("GET", "/v1/groups/h", None);
    assert_eq!(status, 404);
}

#[test]
fn members_consume_over_http_with_polls_acks_and_nacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let (status, body) =
        server.request("POST", "/v1/groups", Some(r#"{"name": "web", "filter": {"category": "job"}}"#));
    assert_eq!(status, 201, "{body}");
    for n in 0..3 {
        let (status, body) =
            server.append(&format!("job-{n}"), &json!({"events": [{"type": "Queued", "data": {"n": n}}]}));
        assert_eq!(status, 200, "{body}");
    }
    let poll = |max: u64| {
        let (status, body) = server.request(
            "POST",
            "/v1/groups/web/members/w1/poll",
            Some(&json!({"max": max, "wait_ms": 5000}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().expect("events").clone()
    };
    let mut taken = poll(2);
    while taken.len() < 2 {
        taken.extend(poll(2 - taken.len() as u64));
    }
    let position = |d: &serde_json::Value| d["event"]["position"].as_u64().expect("a position");
    let (first, second) = (position(&taken[0]), position(&taken[1]));
    assert_eq!(taken[0]["event"]["stream"].as_str(), Some("job-0"));
    assert_eq!(taken[0]["retries"].as_u64(), Some(0));

    let (status, body) =
        server.request("POST", "/v1/groups/web/members/w1/ack", Some(&json!({"positions": [first]}).to_string()));
    assert_eq!((status, body["acked"].as_u64()), (200, Some(1)), "{body}");
    let nack = json!({"positions": [second], "action": "park", "reason": "no worker for this"}).to_string();
    let (status, _) = server.request("POST", "/v1/groups/web/members/w1/nack", Some(&nack));
    assert_eq!(status, 200);
    let third = poll(10);
    assert_eq!(third.len(), 1);
    assert_eq!(third[0]["event"]["stream"].as_str(), Some("job-2"));
    let (status, _) = server.request(
        "POST",
        "/v1/groups/web/members/w1/ack",
        Some(&json!({"positions": [position(&third[0])]}).to_string()),
    );
    assert_eq!(status, 200);

    // Bad answers are refused and change nothing.
    let (status, body) =
        server.request("POST", "/v1/groups/web/members/w1/nack", Some(r#"{"positions": [1], "action": "explode"}"#));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.request("POST", "/v1/groups/web/members/w1/poll", Some(r#"{"max": 0}"#));
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_poll")), "{body}");
    let (status, body) = server.request("POST", "/v1/groups/web/members/nobody/ack", Some(r#"{"positions": [1]}"#));
    assert_eq!((status, body["code"].as_str()), (404, Some("member_not_found")), "{body}");
    let (status, body) = server.request("POST", "/v1/groups/nope/members/w1/poll", Some("{}"));
    assert_eq!((status, body["code"].as_str()), (404, Some("group_not_found")), "{body}");

    let deadline = std::time::Instant::now() + DELIVERY_WAIT;
    loop {
        let (_, info) = server.request("GET", "/v1/groups/web", None);
        if info["parked"].as_u64() == Some(1)
            && info["in_flight"].as_u64() == Some(0)
            && info["buffered"].as_u64() == Some(0)
        {
            assert_eq!(info["members"][0]["acked"].as_u64(), Some(2), "{info}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the answers never landed: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = server.request("DELETE", "/v1/groups/web/members/w1", None);
    assert_eq!((status, body["left"].as_str()), (200, Some("w1")), "{body}");
    let (_, info) = server.request("GET", "/v1/groups/web", None);
    assert_eq!(info["members"].as_array().map(Vec::len), Some(0), "{info}");
}

#[test]
fn a_round_robin_group_on_one_stream_sends_many_of_its_events_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let events: Vec<serde_json::Value> = (0..6).map(|n| json!({"type": "Queued", "data": {"n": n}})).collect();
    let (status, body) = server.append("job-1", &json!({ "events": events }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.append("job-2", &json!({"events": [{"type": "Queued", "data": {}}]}));
    assert_eq!(status, 200, "{body}");
    let create = json!({
        "name": "fan",
        "filter": {"stream": "job-1", "from_revision": 2, "type_regex": "^Que"},
        "strategy": "round_robin",
    });
    let (status, body) = server.request("POST", "/v1/groups", Some(&create.to_string()));
    assert_eq!((status, body["strategy"].as_str()), (201, Some("round_robin")), "{body}");
    let mut taken = Vec::new();
    while taken.len() < 4 {
        let (status, body) = server.request(
            "POST",
            "/v1/groups/fan/members/w1/poll",
            Some(&json!({"max": 10, "wait_ms": 5000}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        taken.extend(body["events"].as_array().expect("events").iter().map(|d| d["event"]["revision"].as_u64()));
    }
    assert_eq!(taken, vec![Some(2), Some(3), Some(4), Some(5)], "one stream, from revision 2, all out at once");
    let bad = json!({"name": "bad", "filter": {"type_regex": "("}});
    let (status, body) = server.request("POST", "/v1/groups", Some(&bad.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("does not compile")), "{body}");
    let (status, _) = server.request("GET", "/v1/groups/bad", None);
    assert_eq!(status, 404, "a refused group is not created");
}
