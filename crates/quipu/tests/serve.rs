//! End-to-end tests of `quipu serve`: the real binary on a free port of
//! loopback, driven over HTTP/1.1 by a minimal client (a few lines over a
//! TCP socket, so the test needs no HTTP library).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// A running server and its address.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quipu"))
            .args(["serve", "--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start quipu serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("http="))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, address }
    }

    /// Sends a request; returns the status and the JSON body.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, body);
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
        (status, json)
    }

    /// Sends a request; returns the status and the body as text.
    fn request_text(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("receive");
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
        (status, body.to_string())
    }

    fn append(&self, stream: &str, body: &Value) -> (u16, Value) {
        self.request("POST", &format!("/v1/streams/{stream}"), Some(&body.to_string()))
    }

    /// SIGTERM, then the exit status code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event(id: &str, data: Value) -> Value {
    json!({"id": id, "type": "Deposited", "data": data, "tags": ["account:1"]})
}

const ID_1: &str = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01";
const ID_2: &str = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a02";

#[test]
fn appends_conflicts_retries_and_reads_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    assert_eq!(server.request("GET", "/health", None), (200, json!({"status": "ok"})));

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
fn sigterm_stops_gracefully_and_acknowledged_appends_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let body = json!({"expected_revision": "no_stream", "events": [event(ID_1, json!({"n": 1}))]});
    assert_eq!(server.append("account-3", &body).0, 200);
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0");

    let server = Server::start(dir.path());
    let (status, read) = server.request("GET", "/v1/streams/account-3", None);
    assert_eq!((status, &read["events"][0]["id"]), (200, &json!(ID_1)));
    let (status, again) = server.append("account-3", &body);
    assert_eq!((status, &again["already_written"]), (200, &json!(true)), "ids are remembered across restarts");
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

    // A live subscription does not keep the server from stopping.
    let mut idle = TcpStream::connect(&server.address).expect("connect");
    let request = format!("GET /v1/subscribe?from=60 HTTP/1.1\r\nHost: {}\r\n\r\n", server.address);
    idle.write_all(request.as_bytes()).expect("send");
    assert_eq!(server.terminate(), Some(0));
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
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
        assert_eq!(server.request_text("GET", probe, None).0, 200, "{probe} is not served");
    }
    for path in ["/v1/streams/{stream}", "/v1/append", "/v1/subscribe"] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
}
