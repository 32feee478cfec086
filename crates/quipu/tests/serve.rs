//! End-to-end tests of `quipu serve`: the real binary on free ports of
//! loopback, driven over HTTP/1.1 by the minimal client of `common`.
//! The SIGKILL crash test is in `serve_crash.rs`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Load, Server, append_until_interrupted, check_streams, serve_command};
use serde_json::{Value, json};

fn event(id: &str, data: Value) -> Value {
    json!({"id": id, "type": "Deposited", "data": data, "tags": ["account:1"]})
}

const ID_1: &str = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01";
const ID_2: &str = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a02";

#[test]
fn appends_conflicts_retries_and_reads_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    assert_eq!(
        server.request("GET", "/health", None),
        (200, json!({"status": "ok", "readable": true, "writable": true}))
    );

    let first = json!({"expected_revision": "no_stream", "events": [event(ID_1, json!({"amount": 5}))]});
    let (status, body) = server.append("account-1", &first);
    assert_eq!((status, &body["next_expected_revision"], &body["already_written"]), (200, &json!(0), &json!(false)));
    let (status, body) = server.append("account-1", &first);
    assert_eq!((status, &body["already_written"]), (200, &json!(true)), "a retry is a no-op: {body}");

    let stale = json!({"expected_revision": "no_stream", "events": [event(ID_2, json!({"amount": 7}))]});
    let (status, body) = server.append("account-1", &stale);
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        (&body["code"], &body["expected"], &body["actual"]),
        (&json!("wrong_expected_revision"), &json!("no_stream"), &json!(0))
    );
    let next = json!({"expected_revision": 0, "events": [event(ID_2, json!({"amount": 7}))]});
    assert_eq!(server.append("account-1", &next).0, 200);

    let (status, body) = server.request("GET", "/v1/streams/account-1", None);
    assert_eq!(status, 200);
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        (&events[0]["id"], &events[0]["data"], &events[0]["revision"]),
        (&json!(ID_1), &json!({"amount": 5}), &json!(0))
    );
    assert_eq!(
        (&events[1]["type"], &events[1]["tags"], &events[1]["position"]),
        (&json!("Deposited"), &json!(["account:1"]), &json!(1))
    );
    assert!(events[1]["recorded_at"].as_u64().is_some_and(|t| t > 0));
    let (_, body) = server.request("GET", "/v1/streams/account-1?direction=backwards&limit=1", None);
    assert_eq!(body["events"][0]["id"], json!(ID_2));
    let (status, body) = server.request("GET", "/v1/streams/account-9", None);
    assert_eq!((status, &body["code"]), (404, &json!("stream_not_found")));
}

#[test]
fn bad_input_gets_its_status_and_a_json_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let ok = json!({"expected_revision": "any", "events": [event(ID_1, json!(1))]});
    assert_eq!(server.append("account-1", &ok).0, 200);
    let big = "x".repeat(2 * 1024 * 1024);
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("invalid JSON", "/v1/streams/account-1".into(), "{\"events\": [".into(), 400, "invalid_json"),
        ("unknown field", "/v1/streams/account-1".into(), json!({"evnts": []}).to_string(), 400, "invalid_json"),
        (
            "bad UUID",
            "/v1/streams/account-1".into(),
            json!({"events": [event("not-a-uuid", json!(1))]}).to_string(),
            400,
            "invalid_event_id",
        ),
        (
            "oversize event",
            "/v1/streams/account-1".into(),
            json!({"events": [event(ID_2, json!(big))]}).to_string(),
            413,
            "event_too_large",
        ),
        ("invalid stream name", "/v1/streams/$system".into(), ok.to_string(), 400, "invalid_name"),
        (
            "unknown expected revision",
            "/v1/streams/account-1".into(),
            json!({"expected_revision": "latest", "events": [event(ID_2, json!(1))]}).to_string(),
            400,
            "invalid_expected_revision",
        ),
        (
            "negative revision",
            "/v1/streams/account-1".into(),
            json!({"expected_revision": -1, "events": [event(ID_2, json!(1))]}).to_string(),
            400,
            "invalid_expected_revision",
        ),
        ("no events", "/v1/streams/account-1".into(), json!({"events": []}).to_string(), 400, "empty_append"),
    ];
    for (what, path, body, status, code) in cases {
        let (got, error) = server.request("POST", &path, Some(&body));
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{what}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {error}");
    }
    for (what, query, code) in [
        ("huge limit", "limit=1000000", "limit_too_large"),
        ("bad direction", "direction=up", "invalid_direction"),
        ("bad number", "from=-3", "invalid_query"),
    ] {
        let (status, error) = server.request("GET", &format!("/v1/streams/account-1?{query}"), None);
        assert_eq!((status, error["code"].as_str()), (400, Some(code)), "{what}: {error}");
    }
    let (_, body) = server.request("GET", "/v1/streams/account-1", None);
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "nothing was written: {body}");
}

#[test]
fn concurrent_writers_with_the_same_expected_revision_have_one_winner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let seed = json!({"expected_revision": "no_stream", "events": [event(ID_1, json!(0))]});
    assert_eq!(server.append("order-7", &seed).0, 200);
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let id = format!("6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4b{i:02}");
                    server.append("order-7", &json!({"expected_revision": 0, "events": [event(&id, json!(i))]}))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer")).collect()
    });
    let winners = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, &body["actual"]), (409, &json!(1)), "{body}");
    }
}

#[test]
fn sigterm_under_load_exits_0_and_every_acknowledged_append_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let body = json!({"expected_revision": "no_stream", "events": [event(ID_1, json!({"n": 1}))]});
    assert_eq!(server.append("account-3", &body).0, 200);
    let load = Load { writers: 8, streams: 4, acknowledged_before_interrupt: 200, id_seed: 0 };
    let mut ledger = append_until_interrupted(&server, &load, |server| server.signal("TERM"));
    assert_eq!(server.wait(), Some(0), "SIGTERM exits 0");
    assert!(ledger.acknowledged.len() >= load.acknowledged_before_interrupt, "the load ran before SIGTERM");

    let server = Server::start(dir.path());
    check_streams(&server, &ledger);
    ledger.retry_unknown(&server);
    check_streams(&server, &ledger);
    let (status, read) = server.request("GET", "/v1/streams/account-3", None);
    assert_eq!((status, &read["events"][0]["id"]), (200, &json!(ID_1)));
    let (status, again) = server.append("account-3", &body);
    assert_eq!((status, &again["already_written"]), (200, &json!(true)), "ids are remembered across restarts");
}

/// Writes `text` to `quipu.toml` in `dir`; returns its path.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("quipu.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Starts `quipu serve` with the arguments and environment `configure`
/// adds, and stops it; returns the data directory it served.
fn served_data_dir(configure: impl FnOnce(&mut Command)) -> String {
    let mut command = serve_command();
    configure(&mut command);
    let server = Server::spawn(command);
    assert_eq!(server.request("GET", "/health", None).0, 200);
    let data_dir = server.data_dir.clone();
    assert_eq!(server.terminate(), Some(0));
    data_dir
}

#[test]
fn a_config_file_sets_what_env_vars_and_flags_leave_unset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "data_dir = \"from-file\"\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
    );
    let [from_file, from_env, from_flag] =
        ["from-file", "from-env", "from-flag"].map(|name| dir.path().join(name).display().to_string());
    let served = served_data_dir(|command| {
        command.arg("--config").arg(&config);
    });
    assert_eq!(served, from_file, "a relative data_dir is relative to the file");
    let served = served_data_dir(|command| {
        command.env("QUIPU_CONFIG", &config);
    });
    assert_eq!(served, from_file, "QUIPU_CONFIG names the file too");
    let served = served_data_dir(|command| {
        command.arg("--config").arg(&config).env("QUIPU_DATA_DIR", &from_env);
    });
    assert_eq!(served, from_env, "the environment overrides the file");
    let served = served_data_dir(|command| {
        command.arg("--config").arg(&config).env("QUIPU_DATA_DIR", &from_env).args(["--data-dir", &from_flag]);
    });
    assert_eq!(served, from_flag, "a flag overrides the environment");
}

#[test]
fn a_bad_config_file_stops_the_server_with_a_message_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let cases = [
        ("data_dri = \"x\"\n", "unknown field `data_dri`"),
        ("http_listen = \"localhost\"\n", "http_listen"),
        ("insecure = \"yes\"\n", "insecure"),
        ("data_dir = \"x\n", "line 1"),
    ];
    for (text, problem) in cases {
        let config = write_config(dir.path(), text);
        let output = serve_command()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .stderr(Stdio::piped())
            .output()
            .expect("run quipu serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(stderr.contains(&format!("invalid config file {}", config.display())), "{text:?}: {stderr}");
        assert!(stderr.contains(problem), "{text:?} should name {problem:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{text:?}: the server did not start");
    }
    let absent = dir.path().join("absent.toml");
    let output = serve_command().arg("--config").arg(&absent).stderr(Stdio::piped()).output().expect("run quipu serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot read the config file {}", absent.display())), "{stderr}");
    assert!(!data_dir.exists(), "no store was opened");
}

#[test]
fn all_category_type_and_tag_reads_go_by_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let placed = |id: &str, tag: &str| json!({"id": id, "type": "Placed", "data": {}, "tags": [tag]});
    let paid = |id: &str| json!({"id": id, "type": "Paid", "data": {}});
    let ids: Vec<String> = (0..4).map(|i| format!("6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4c{i:02}")).collect();
    assert_eq!(server.append("order-1", &json!({"events": [placed(&ids[0], "customer:1")]})).0, 200);
    assert_eq!(server.append("invoice-1", &json!({"events": [placed(&ids[1], "customer:2")]})).0, 200);
    assert_eq!(server.append("order-2", &json!({"events": [placed(&ids[2], "customer:1"), paid(&ids[3])]})).0, 200);
    let positions = |path: &str| -> Vec<u64> {
        let (status, body) = server.request("GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        body["events"].as_array().expect("events").iter().filter_map(|e| e["position"].as_u64()).collect()
    };
    assert_eq!(positions("/v1/all"), [0, 1, 2, 3]);
    assert_eq!(positions("/v1/all?from=2&direction=backwards&limit=2"), [2, 1]);
    assert_eq!(positions("/v1/categories/order"), [0, 2, 3]);
    assert_eq!(positions("/v1/categories/order?from=1"), [2, 3]);
    assert_eq!(positions("/v1/types/Placed"), [0, 1, 2]);
    assert_eq!(positions("/v1/types/Paid"), [3]);
    assert_eq!(positions("/v1/tags/customer:1?direction=backwards"), [2, 0]);
    assert!(positions("/v1/categories/shipment").is_empty());
    let (status, body) = server.request("GET", "/v1/all?limit=1000000", None);
    assert_eq!((status, body["code"].as_str()), (400, Some("limit_too_large")));
}

#[test]
fn a_multi_stream_append_is_all_or_nothing_and_checks_a_dcb_condition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let post = |body: Value| server.request("POST", "/v1/append", Some(&body.to_string()));
    let ev = |n: u32, tag: &str| json!({"id": format!("6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4d{n:02}"), "type": "Moved", "data": {}, "tags": [tag]});
    let transfer = |from_expected: Value, n: u32| {
        json!({"writes": [
            {"stream": "account-1", "expected_revision": from_expected, "events": [ev(n, "transfer")]},
            {"stream": "account-2", "expected_revision": "any", "events": [ev(n + 1, "transfer")]}
        ]})
    };
    let (status, body) = post(transfer(json!(3), 0));
    assert_eq!(
        (status, &body["streams"][0]["stream"], &body["streams"][0]["actual"]),
        (409, &json!("account-1"), &Value::Null),
        "{body}"
    );
    let (status, body) = server.request("GET", "/v1/all", None);
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing of the refused append was written"
    );

    let (status, body) = post(transfer(json!("no_stream"), 0));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["streams"],
        json!([
            {"stream": "account-1", "first_revision": 0, "last_revision": 0},
            {"stream": "account-2", "first_revision": 0, "last_revision": 0}
        ])
    );
    assert_eq!(post(transfer(json!("no_stream"), 0)).1["already_written"], json!(true));

    let guarded = |n: u32, after: Value| {
        json!({"writes": [{"stream": "audit-1", "events": [ev(n, "audit")]}],
               "condition": {"query": [{"types": ["Moved"], "tags": ["transfer"]}], "after": after}})
    };
    let (status, body) = post(guarded(10, Value::Null));
    assert_eq!(
        (status, &body["code"], &body["condition_position"]),
        (409, &json!("condition_failed"), &json!(0)),
        "{body}"
    );
    let (status, body) = post(guarded(10, json!(1)));
    assert_eq!(status, 200, "nothing matches after position 1: {body}");
    let (status, body) =
        post(json!({"writes": [{"stream": "a-1", "events": [ev(20, "x")]}], "condition": {"query": []}}));
    assert_eq!((status, &body["code"]), (400, &json!("empty_query")));
}

/// Reads server-sent events from `/v1/subscribe?{query}` until `count`
/// events came; returns their positions in arrival order.
fn subscribe(address: &str, query: &str, count: usize) -> Vec<u64> {
    let mut stream = TcpStream::connect(address).expect("connect");
    let request = format!("GET /v1/subscribe?{query} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut positions = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("read a line");
        // Chunked framing lines carry no "data:" prefix and are skipped.
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let event: Value = serde_json::from_str(data).expect("event JSON");
        positions.push(event["position"].as_u64().expect("position"));
        if positions.len() == count {
            break;
        }
    }
    positions
}

#[test]
fn an_sse_subscription_sees_every_event_once_in_order_across_catch_up_and_live() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let append = |n: usize| {
        let id = format!("6f1c9b7e-2f44-4b8e-9a53-{n:012}");
        let (status, body) =
            server.append(&format!("tick-{}", n % 3), &json!({"events": [{"id": id, "type": "Tick", "data": n}]}));
        assert_eq!(status, 200, "{body}");
    };
    (0..30).for_each(append);
    let positions = std::thread::scope(|scope| {
        let reader = scope.spawn(|| subscribe(&server.address, "from=0", 60));
        (30..60).for_each(append);
        reader.join().expect("subscriber")
    });
    assert_eq!(positions, (0..60).collect::<Vec<u64>>());
    assert_eq!(subscribe(&server.address, "from=55", 5), [55, 56, 57, 58, 59]);
    // Filters: one stream from a revision, a type, a category.
    assert_eq!(subscribe(&server.address, "stream=tick-1&from=2", 5), [7, 10, 13, 16, 19]);
    assert_eq!(subscribe(&server.address, "type=Tick&from=50", 3), [50, 51, 52]);
    assert_eq!(subscribe(&server.address, "category=tick&from=58", 2), [58, 59]);
    let (status, error) = server.request("GET", "/v1/subscribe?category=tick&tag=vip", None);
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_query")), "{error}");
    let (status, error) = server.request("GET", "/v1/subscribe?type=bad%0Atype", None);
    assert_eq!(status, 400, "{error}");

    // A live subscription does not keep the server from stopping.
    let mut idle = TcpStream::connect(&server.address).expect("connect");
    let request = format!("GET /v1/subscribe?from=60 HTTP/1.1\r\nHost: {}\r\n\r\n", server.address);
    idle.write_all(request.as_bytes()).expect("send");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn ids_with_another_spelling_the_nil_id_and_dot_stream_names_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let with_id = |id: &str| json!({"events": [{"id": id, "type": "Placed", "data": {}}]});
    for id in [
        "00000000-0000-0000-0000-000000000000",
        "{6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01}",
        "urn:uuid:6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01",
        "6f1c9b7e2f444b8e9a530d2f1d3c4a01",
    ] {
        let (status, body) = server.append("order-1", &with_id(id));
        assert_eq!((status, &body["code"]), (400, &json!("invalid_event_id")), "{id}: {body}");
    }
    for name in ["..", "%2E%2E", "."] {
        let (status, body) = server.append(name, &with_id(ID_1));
        assert_eq!((status, &body["code"]), (400, &json!("invalid_name")), "{name}: {body}");
    }
    let (status, body) = server.append("order-1", &with_id(&ID_1.to_uppercase()));
    assert_eq!(status, 200, "upper case is the same id: {body}");
    let (_, read) = server.request("GET", "/v1/streams/order-1", None);
    assert_eq!(read["events"].as_array().map(Vec::len), Some(1), "nothing refused was written: {read}");
    assert_eq!(read["events"][0]["id"], ID_1, "{read}");
}

#[test]
fn unknown_paths_and_methods_are_answered_with_json_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let (status, body) = server.request("GET", "/v2/nothing", None);
    assert_eq!((status, &body["code"]), (404, &json!("route_not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("GET /v2/nothing"), "{body}");
    let (status, body) = server.request("DELETE", "/health", None);
    assert_eq!((status, &body["code"]), (405, &json!("method_not_allowed")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("/health does not take DELETE"), "{body}");
}

#[test]
fn metrics_count_appends_by_outcome_and_responses_by_class() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let body = json!({"expected_revision": "no_stream", "events": [event(ID_1, json!(1)), event(ID_2, json!(2))]});
    assert_eq!(server.append("account-1", &body).0, 200);
    assert_eq!(server.append("account-1", &body).0, 200);
    let stale =
        json!({"expected_revision": "no_stream", "events": [event("6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a09", json!(3))]});
    assert_eq!(server.append("account-1", &stale).0, 409);
    assert_eq!(server.request("GET", "/v1/streams/none-1", None).0, 404);
    let (status, text) = server.request_text("GET", "/metrics", None);
    assert_eq!(status, 200);
    for line in [
        "quipu_appends_total{outcome=\"written\"} 1",
        "quipu_appends_total{outcome=\"already_written\"} 1",
        "quipu_appends_total{outcome=\"conflict\"} 1",
        "quipu_events_written_total 2",
        "quipu_http_responses_total{class=\"2xx\"} 2",
        "quipu_http_responses_total{class=\"4xx\"} 2",
        "quipu_log_events 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn the_openapi_document_describes_the_served_routes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let (status, doc) = server.request("GET", "/openapi.json", None);
    assert_eq!((status, &doc["openapi"]), (200, &json!("3.1.0")));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, probe) in [
        ("/health", "/health"),
        ("/metrics", "/metrics"),
        ("/v1/all", "/v1/all"),
        ("/v1/categories/{category}", "/v1/categories/order"),
        ("/v1/types/{event_type}", "/v1/types/Placed"),
        ("/v1/tags/{tag}", "/v1/tags/vip"),
        ("/v1/integration", "/v1/integration"),
        ("/v1/integration-types", "/v1/integration-types"),
        ("/v1/projections", "/v1/projections"),
        ("/v1/snapshot-policies", "/v1/snapshot-policies"),
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
        assert_eq!(server.request_text("GET", probe, None).0, 200, "{probe} is not served");
    }
    for path in ["/v1/streams/{stream}", "/v1/append", "/v1/subscribe"] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
}
