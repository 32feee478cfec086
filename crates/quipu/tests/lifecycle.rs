//! Stream lifecycle against the real `quipu serve` binary: max count,
//! truncate before, max age and custom metadata on reads of the stream;
//! a soft delete that reads as not found until new events come; a
//! tombstone that refuses reads and appends for good; all across a
//! restart; bad input; the CLI.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use quipu_client::{Client, Direction, Error, ExpectedRevision, NewEvent, Position, Revision, StreamMetadata};
use serde_json::json;

use common::Server;

async fn connect(server: &Server) -> Client {
    Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect over gRPC")
}

async fn write(client: &Client, stream: &str, n: u64) {
    let events = (0..n).map(|i| NewEvent::json("Noted", &json!({ "i": i })).expect("JSON")).collect();
    client.append(stream, ExpectedRevision::Any, events).await.expect("append");
}

async fn revisions(client: &Client, stream: &str) -> Result<Vec<u64>, Error> {
    Ok(client.read_stream(stream, None, Direction::Forwards, 1000).await?.iter().map(|e| e.revision.0).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_deletes_and_tombstones_shape_what_a_stream_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    write(&client, "log-1", 10).await;

    let keep = |max_count, truncate_before| StreamMetadata { max_count, truncate_before, ..StreamMetadata::default() };
    client.set_stream_metadata("log-1", &keep(Some(3), None)).await.expect("max count");
    assert_eq!(revisions(&client, "log-1").await.expect("read"), [7, 8, 9]);
    let back = client.read_stream("log-1", None, Direction::Backwards, 10).await.expect("read");
    assert_eq!(back.iter().map(|e| e.revision.0).collect::<Vec<_>>(), [9, 8, 7]);
    client.set_stream_metadata("log-1", &keep(None, Some(Revision(4)))).await.expect("truncate");
    assert_eq!(revisions(&client, "log-1").await.expect("read").first(), Some(&4));
    assert_eq!(client.load_stream("log-1").await.expect("load").len(), 6);
    let aged =
        StreamMetadata { max_age_s: Some(3600), custom: Some(json!({"owner": "ops"})), ..StreamMetadata::default() };
    client.set_stream_metadata("log-1", &aged).await.expect("max age");
    assert_eq!(revisions(&client, "log-1").await.expect("read").len(), 10, "every event is younger than an hour");
    assert_eq!(client.stream_metadata("log-1").await.expect("meta").custom, Some(json!({"owner": "ops"})));
    write(&client, "log-3", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    write(&client, "log-3", 1).await;
    let young = StreamMetadata { max_age_s: Some(2), ..StreamMetadata::default() };
    client.set_stream_metadata("log-3", &young).await.expect("max age");
    assert_eq!(revisions(&client, "log-3").await.expect("read"), [2], "the events older than 2 s are hidden");

    // Soft delete: not found until new events; revisions go on.
    client.delete_stream("log-1", false).await.expect("delete");
    assert!(matches!(revisions(&client, "log-1").await, Err(Error::NotFound(_))));
    assert!(client.load_stream("log-1").await.expect("load").is_empty());
    write(&client, "log-1", 2).await;
    assert_eq!(revisions(&client, "log-1").await.expect("read"), [10, 11]);
    let mut subscription = client
        .subscribe(Some(quipu_client::Filter::Stream("log-1".into())), quipu_client::Start::Revision(Revision(0)))
        .await
        .expect("sub");
    match tokio::time::timeout(std::time::Duration::from_secs(20), futures_util::StreamExt::next(&mut subscription))
        .await
    {
        Ok(Some(Ok(quipu_client::SubscriptionItem::Event(event)))) => {
            assert_eq!(event.revision, Revision(10), "a subscription skips hidden events")
        }
        other => panic!("unexpected: {other:?}"),
    }
    drop(subscription);
    let all = client.read_all(None, Direction::Forwards, 1000).await.expect("$all");
    assert_eq!(all.iter().filter(|e| e.stream == "log-1").count(), 12, "$all keeps every event until a scavenge");

    // Snapshots that folded events now hidden are not used.
    client
        .write_snapshot("log-1", Revision(9), 1, b"{\"stale\": true}".to_vec())
        .await
        .expect("a snapshot before the delete");
    let load = client.load_from_snapshot("log-1", Some(1), None).await.expect("load");
    assert_eq!((load.snapshot, load.events.iter().map(|e| e.revision.0).collect::<Vec<_>>()), (None, vec![10, 11]));

    // Tombstone: for good, across a restart.
    write(&client, "log-2", 1).await;
    client.delete_stream("log-2", true).await.expect("tombstone");
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    for result in [
        revisions(&client, "log-2").await.map(|_| ()),
        client.append("log-2", ExpectedRevision::Any, vec![NewEvent::new("Noted", b"{}".to_vec())]).await.map(|_| ()),
    ] {
        match result {
            Err(Error::NotFound(message)) => assert!(message.contains("stream_deleted"), "{message}"),
            other => panic!("a tombstoned stream: {other:?}"),
        }
    }
    let (status, body) = server.request("GET", "/v1/streams/log-2", None);
    assert_eq!((status, body["code"].as_str()), (410, Some("stream_deleted")));
    let (status, body) = server.request("GET", "/v1/streams/log-2/load", None);
    assert_eq!((status, body["code"].as_str()), (410, Some("stream_deleted")));
    let refused = client
        .subscribe(Some(quipu_client::Filter::Stream("log-2".into())), quipu_client::Start::Revision(Revision(0)))
        .await;
    let first = match refused {
        Ok(mut subscription) => futures_util::StreamExt::next(&mut subscription).await.map(|item| item.map(|_| ())),
        Err(error) => Some(Err(error)),
    };
    assert!(matches!(first, Some(Err(Error::NotFound(_)))), "a subscription to a tombstoned stream: {first:?}");
    assert!(matches!(client.delete_stream("log-2", false).await, Err(Error::NotFound(_))), "no way back");
    assert_eq!(revisions(&client, "log-1").await.expect("read"), [10, 11], "metadata survived the restart");

    // Bad input and the CLI.
    let (status, body) = server.request("PUT", "/v1/streams/log-1/metadata", Some(r#"{"max_count": 0}"#));
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_metadata")));
    let (status, body) = server.request("PUT", "/v1/streams/log-1/metadata", Some(r#"{"maxCount": 2}"#));
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));
    let (status, _) = server.request("DELETE", "/v1/streams/nothing-1", None);
    assert_eq!(status, 404);
    let quipu = |args: &[&str]| server.cli(args);
    let set = quipu(&["--json", "stream", "meta", "log-1", "--max-count", "1"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    assert_eq!(revisions(&client, "log-1").await.expect("read"), [11]);
    let tombstone = quipu(&["stream", "tombstone", "log-1"]);
    assert!(tombstone.status.success(), "{}", String::from_utf8_lossy(&tombstone.stderr));
    let read = quipu(&["read", "log-1"]);
    assert_eq!(read.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&read.stderr).contains("deleted for good"), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_lands_after_a_tombstone_even_when_appends_race_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    // Writers stream batches of appends (many queued in the sequencer at
    // once) until the stream is refused.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut written = 0u64;
                loop {
                    let appends: Vec<quipu_client::Append> = (0..200)
                        .map(|n| {
                            let event = NewEvent::json("Noted", &json!({ "w": w, "n": n })).expect("JSON");
                            quipu_client::Append::new().stream("race-1", ExpectedRevision::Any, vec![event])
                        })
                        .collect();
                    let mut refused = false;
                    for outcome in client.append_batch(&appends).await.expect("a batch") {
                        match outcome {
                            quipu_client::BatchOutcome::Written(_) => written += 1,
                            quipu_client::BatchOutcome::Refused(Error::NotFound(m)) if m.contains("stream_deleted") => {
                                refused = true;
                            }
                            quipu_client::BatchOutcome::Refused(error) => panic!("writer {w}: {error}"),
                        }
                    }
                    if refused {
                        return written;
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.stream_info("race-1").await.expect("info").last_revision.is_none_or(|r| r < Revision(50)) {
        assert!(tokio::time::Instant::now() < deadline, "the writers never got going");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    client.delete_stream("race-1", true).await.expect("tombstone");
    let mut written = 0;
    for writer in writers {
        written += writer.await.expect("writer");
    }

    let record = client.read_stream("$stream-metadata", None, Direction::Backwards, 1).await.expect("the record");
    let tombstone_at = record.first().expect("a tombstone record").position;
    let all = client.read_all(None, Direction::Forwards, 10_000).await.expect("$all");
    let race: Vec<Position> = all.iter().filter(|e| e.stream == "race-1").map(|e| e.position).collect();
    assert_eq!(race.len() as u64, written, "every acknowledged append is in the log, and nothing else");
    let after: Vec<&Position> = race.iter().filter(|p| **p > tombstone_at).collect();
    assert!(after.is_empty(), "events landed after the tombstone at {tombstone_at}: {after:?}");
}
