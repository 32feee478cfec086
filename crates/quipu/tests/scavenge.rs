//! The online scavenge against the real server: it removes every event
//! stream metadata hides (tombstone, soft delete, truncate before, max
//! count) while writers append and readers read, frees disk, keeps every
//! live event intact across a restart, and survives SIGKILLs in the
//! middle of it with nothing live lost. Plus the CLI with its progress
//! output and bad requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Load, Server, append_until_interrupted, check_streams, read_stream_ids};
use serde_json::{Value, json};

/// Segments close at 128 KiB, so the data below spans dozens of them.
const SEGMENT_BYTES: &str = "131072";

fn start(data_dir: &Path) -> Server {
    Server::spawn(common::serve_on(data_dir, &["--segment-size-bytes", SEGMENT_BYTES]))
}

/// Appends `count` events of about 500 bytes to `stream`, 50 per request.
fn fill(server: &Server, stream: &str, count: usize) {
    for first in (0..count).step_by(50) {
        let events: Vec<Value> = (first..count.min(first + 50))
            .map(|n| json!({"type": "Filled", "data": {"n": n, "pad": "p".repeat(450)}}))
            .collect();
        let (status, body) = server.append(stream, &json!({"expected_revision": "any", "events": events}));
        assert_eq!(status, 200, "{body}");
    }
}

/// Bytes of the segment files in `data_dir/log`, and whether any file is
/// not exactly one generation of one segment.
fn log_bytes(data_dir: &Path) -> u64 {
    let mut numbers = BTreeMap::new();
    let mut bytes = 0;
    for entry in std::fs::read_dir(data_dir.join("log")).expect("log dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "durable.mark" {
            // Where the acknowledged records end (docs/storage.md).
            continue;
        }
        assert!(name.ends_with(".qlog"), "a file other than a segment is left: {name}");
        *numbers.entry(name[..10].to_string()).or_insert(0) += 1;
        // The zeros an idle store writes ahead of its active segment's end
        // hold no record: only the bytes up to the last other one count.
        let contents = std::fs::read(entry.path()).expect("read a segment");
        bytes += contents.iter().rposition(|&b| b != 0).map_or(0, |last| last as u64 + 1);
    }
    assert!(numbers.values().all(|&n| n == 1), "a segment has two generations on disk: {numbers:?}");
    bytes
}

/// Every event of `$all` as (stream, revision, id).
fn all_events(server: &Server) -> Vec<(String, u64, String)> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let (status, body) = server.request("GET", &format!("/v1/all?from={from}&limit=1000"), None);
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().expect("events");
        for event in page {
            let stream = event["stream"].as_str().expect("stream").to_string();
            events.push((
                stream,
                event["revision"].as_u64().expect("revision"),
                event["id"].as_str().expect("id").into(),
            ));
            from = event["position"].as_u64().expect("position") + 1;
        }
        if page.is_empty() {
            return events;
        }
    }
}

/// The visible events (ids) of every stream the test wrote, as reads
/// return them.
fn visible(server: &Server, streams: &[&str]) -> BTreeMap<String, Vec<String>> {
    streams.iter().map(|s| (s.to_string(), visible_ids(server, s))).collect()
}

/// Ids a read of `stream` returns (metadata applied), forwards.
fn visible_ids(server: &Server, stream: &str) -> Vec<String> {
    let (status, body) = server.request("GET", &format!("/v1/streams/{stream}?limit=10000"), None);
    if status == 404 || status == 410 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id").to_string()).collect()
}

/// What a stream keeps: `None` for every event, `Some(r)` from revision r.
fn keeps(stream: &str) -> Option<u64> {
    match stream {
        "gone-1" | "gone-2" => Some(u64::MAX),
        "trunc-1" => Some(150),
        "cap-1" => Some(200 - 10),
        _ => None,
    }
}

const STREAMS: [&str; 6] = ["gone-1", "gone-2", "trunc-1", "cap-1", "kept-1", "kept-2"];

/// Writes the doomed streams, sets their metadata, then writes enough to
/// push them out of the segment appends write to.
fn prepare(server: &Server) {
    for stream in ["gone-1", "gone-2", "trunc-1", "cap-1", "kept-1"] {
        fill(server, stream, 200);
    }
    let (status, body) = server.request("DELETE", "/v1/streams/gone-1?tombstone=true", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.request("DELETE", "/v1/streams/gone-2", None);
    assert_eq!(status, 200, "{body}");
    for (stream, metadata) in [("trunc-1", json!({"truncate_before": 150})), ("cap-1", json!({"max_count": 10}))] {
        let (status, body) =
            server.request("PUT", &format!("/v1/streams/{stream}/metadata"), Some(&metadata.to_string()));
        assert_eq!(status, 200, "{body}");
    }
    fill(server, "kept-2", 600);
}

/// `$all` holds no hidden event of the test's streams (they all lie in
/// closed segments), and every live one.
fn check_all_after(server: &Server, before: &[(String, u64, String)]) {
    let after = all_events(server);
    let doomed = |(stream, revision, _): &(String, u64, String)| keeps(stream).is_some_and(|from| *revision < from);
    let expected: Vec<_> = before.iter().filter(|e| !doomed(e)).cloned().collect();
    let after_of_ours: Vec<_> = after.iter().filter(|(s, _, _)| !s.starts_with("load-")).cloned().collect();
    assert_eq!(after_of_ours, expected, "$all after the scavenge");
}

fn scavenge_status(server: &Server) -> Value {
    let (status, body) = server.request("GET", "/v1/scavenge", None);
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_for_end(server: &Server) -> Value {
    loop {
        let status = scavenge_status(server);
        if status["state"] != "running" {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn scavenge_removes_hidden_events_under_load_frees_disk_and_keeps_every_live_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let (status, body) = server.request("GET", "/v1/scavenge", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("no_scavenge")), "{body}");
    prepare(&server);
    let before_all = all_events(&server);
    let before_visible = visible(&server, &STREAMS);
    let before_bytes = log_bytes(dir.path());

    // Writers append and readers read the live streams throughout.
    let load = Load { writers: 2, streams: 4, acknowledged_before_interrupt: 50, id_seed: 1 };
    let reading = AtomicBool::new(true);
    let mut cli = None;
    let ledger = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while reading.load(Ordering::Relaxed) {
                assert_eq!(visible_ids(&server, "kept-1"), before_visible["kept-1"], "kept-1 changed mid-scavenge");
                assert_eq!(visible_ids(&server, "cap-1"), before_visible["cap-1"], "cap-1 changed mid-scavenge");
                reads += 1;
            }
            reads
        });
        let ledger = append_until_interrupted(&server, &load, |server| {
            let output = server.cli(&["scavenge"]);
            // The writers stop when the server does; stop it once the
            // scavenge has ended and the last appends are in.
            cli = Some(output);
            reading.store(false, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            server.signal("TERM");
        });
        assert!(reader.join().expect("reader") > 0, "the reader read during the scavenge");
        ledger
    });
    let cli = cli.expect("the scavenge ran");
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "quipu scavenge: {stdout}{}", String::from_utf8_lossy(&cli.stderr));
    assert!(stdout.contains("scavenge done"), "{stdout}");
    let removed_events = 200 + 200 + 150 + 190;
    assert!(stdout.contains(&format!("{removed_events} events removed")), "{stdout}");
    assert!(!ledger.acknowledged.is_empty());
    drop(server);

    let server = start(dir.path());
    check_streams(&server, &ledger);
    assert_eq!(visible(&server, &STREAMS), before_visible, "every live event is intact");
    assert_eq!(read_stream_ids(&server, "kept-2").len(), 600);
    check_all_after(&server, &before_all);
    let after_bytes = log_bytes(dir.path());
    let doomed_bytes = removed_events as u64 * 500;
    // The writers appended throughout, as fast as the host lets them: at
    // most the length of their JSON bodies, which take more room than
    // their records (ids as 36 characters, field names).
    let appended_bytes: u64 =
        ledger.acknowledged.iter().chain(&ledger.unknown).map(|a| a.body.to_string().len() as u64).sum();
    assert!(
        after_bytes + doomed_bytes / 2 < before_bytes + appended_bytes,
        "the log went from {before_bytes} to {after_bytes} bytes while the writers appended at most \
         {appended_bytes}, removing about {doomed_bytes}"
    );
    // Revisions go on after a soft delete, and a tombstone stays.
    let (status, body) =
        server.append("gone-2", &json!({"expected_revision": 199, "events": [{"type": "Back", "data": {}}]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(visible_ids(&server, "gone-2").len(), 1);
    let (status, _) = server.request("GET", "/v1/streams/gone-1", None);
    assert_eq!(status, 410);
}

#[test]
fn sigkill_in_the_middle_of_a_scavenge_loses_nothing_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    prepare(&server);
    // Many segments, so the scavenge runs long enough to be killed in.
    for n in 0..4 {
        fill(&server, &format!("bulk-{n}"), 1000);
    }
    let before_all = all_events(&server);
    let before_visible = visible(&server, &STREAMS);
    drop(server);

    let mut ledger = common::Ledger::default();
    let mut killed_mid_scavenge = 0;
    for round in 0..3u16 {
        let server = start(dir.path());
        let load = Load { writers: 2, streams: 4, acknowledged_before_interrupt: 20, id_seed: 10 + round };
        let round_ledger = append_until_interrupted(&server, &load, |server| {
            let (status, body) = server.request("POST", "/v1/scavenge", None);
            assert_eq!(status, 202, "{body}");
            // Let it get 0, 1 or 2 segments in, then pull the plug.
            let wanted = u64::from(round);
            loop {
                let status = scavenge_status(server);
                if status["segments_done"].as_u64().expect("done") >= wanted || status["state"] != "running" {
                    killed_mid_scavenge += usize::from(status["state"] == "running");
                    break;
                }
            }
            server.signal("KILL");
        });
        ledger.extend(round_ledger);
        drop(server);
        let server = start(dir.path());
        ledger.retry_unknown(&server);
        check_streams(&server, &ledger);
        assert_eq!(visible(&server, &STREAMS), before_visible, "round {round}: every live event is intact");
        log_bytes(dir.path());
    }
    assert!(killed_mid_scavenge > 0, "no kill landed while a scavenge ran");

    let server = start(dir.path());
    let (status, body) = server.request("POST", "/v1/scavenge", None);
    assert_eq!(status, 202, "{body}");
    let (status, body) = server.request("POST", "/v1/scavenge", None);
    assert!(status == 409 && body["code"] == "scavenge_running" || status == 202, "{status} {body}");
    let end = wait_for_end(&server);
    assert_eq!(end["state"], "done", "{end}");
    check_streams(&server, &ledger);
    assert_eq!(visible(&server, &STREAMS), before_visible);
    check_all_after(&server, &before_all);
    let (status, body) = server.request("DELETE", "/v1/scavenge", None);
    assert_eq!((status, body["code"].as_str()), (409, Some("scavenge_not_running")), "{body}");
}
