//! The HTTP door against requests that are too big or do not parse,
//! through the real binary: a body declared over the limit is refused
//! before it is read; bodies wait for room in the door's budget of bytes
//! in flight, then get 503; the answers hyper gives to requests it cannot
//! parse (414, 431, 400) and paths with a bad percent-encoding or bytes
//! that are not UTF-8 are JSON `{code, message}` like every other error.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use common::{Server, serve_command};

/// Far longer than any answer takes; a server that waits for bytes that
/// never come fails the test here.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// Sends `request` on a new connection and reads the answer until the
/// server closes; its status and JSON body. Panics when the server waits
/// past [`READ_LIMIT`] or the body is not JSON.
fn exchange(address: &str, request: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request).unwrap();
    answer(&mut stream)
}

/// The answer on `stream`, read until the server closes it: its status
/// and JSON body. Panics when there is none.
fn answer(stream: &mut TcpStream) -> (u16, Value) {
    try_answer(stream).unwrap_or_else(|error| panic!("{error}"))
}

/// As [`answer`], saying what went wrong instead of panicking.
fn try_answer(stream: &mut TcpStream) -> Result<(u16, Value), String> {
    stream.set_read_timeout(Some(READ_LIMIT)).map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset && !received.is_empty() => break,
            Err(error) => {
                return Err(format!("no whole answer ({error}) after {:?}", String::from_utf8_lossy(&received)));
            }
        }
    }
    let text = String::from_utf8_lossy(&received);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no head in {text:?}"))?;
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status in {head:?}"))?;
    let body = serde_json::from_str(body).map_err(|e| format!("the body is not JSON ({e}): {text:?}"))?;
    Ok((status, body))
}

/// The head of a POST of `length` bytes of JSON to `path`, closing after.
fn post_head(address: &str, path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\
         Connection: close\r\n\r\n"
    )
}

/// Asserts that an answer is `status` with the error `code` and a message.
fn assert_error((status, body): (u16, Value), expected: (u16, &str)) {
    assert_eq!((status, body["code"].as_str()), (expected.0, Some(expected.1)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {body}");
}

#[test]
fn bodies_declared_over_the_limit_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Headers only: a server that read the 50 MB bodies would wait for
    // them until the test gives up. Held open together, as uploads are.
    let mut uploads: Vec<TcpStream> = (0..20)
        .map(|n| {
            let mut stream = TcpStream::connect(&server.address).unwrap();
            let head = post_head(&server.address, &format!("/v1/streams/big-{n}"), 50 * 1024 * 1024);
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    for upload in &mut uploads {
        assert_error(answer(upload), (413, "body_too_large"));
    }
    let (status, body) = server.request("GET", "/v1/streams/big-0", None);
    assert_eq!((status, &body["code"]), (404, &serde_json::json!("stream_not_found")), "nothing was written: {body}");
}

#[test]
fn bodies_past_the_bytes_in_flight_wait_for_room_then_get_503_while_small_ones_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--http-header-timeout-s", "2"])
        .args(["--max-request-bytes-in-flight", "10485760", "--data-dir"])
        .arg(dir.path());
    let server = Server::spawn(command);
    // Two 8 MB bodies (under the body limit) that stop after their first
    // bytes: the first to reserve its bytes holds 8 of the door's 10 MiB
    // while it waits for the rest, so the other finds no room and, after
    // the wait, gets 503. Whichever it is answers; the other never does.
    let (answers, answered) = std::sync::mpsc::channel();
    let mut slow = Vec::new();
    for n in 0..2 {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let head = post_head(&server.address, &format!("/v1/streams/slow-{n}"), 8_000_000);
        stream.write_all(format!("{head}{{\"events\": [").as_bytes()).unwrap();
        let mut reader = stream.try_clone().unwrap();
        let answers = answers.clone();
        std::thread::spawn(move || answers.send(try_answer(&mut reader)));
        slow.push(stream);
    }
    let busy = answered.recv_timeout(READ_LIMIT).expect("one of the two is answered");
    assert_error(busy.unwrap(), (503, "server_busy"));
    // A small append fits beside the slow one.
    let event = serde_json::json!({"expected_revision": "no_stream", "events": [{"type": "Small", "data": {}}]});
    let (status, body) = server.append("small", &event);
    assert_eq!(status, 200, "{body}");
    for stream in slow {
        // Ends the reader of the one never answered, too.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn requests_that_do_not_parse_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let address = &server.address;
    let long_target = format!("GET /v1/streams/{} HTTP/1.1\r\nHost: {address}\r\n\r\n", "a".repeat(70_000));
    assert_error(exchange(address, long_target.as_bytes()), (414, "uri_too_long"));
    let many_headers: String = (0..120).map(|n| format!("X-Header-{n}: {n}\r\n")).collect();
    let crowded = format!("GET /health HTTP/1.1\r\nHost: {address}\r\n{many_headers}\r\n");
    assert_error(exchange(address, crowded.as_bytes()), (431, "headers_too_large"));
    let no_colon = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nThis is not a header\r\n\r\n");
    assert_error(exchange(address, no_colon.as_bytes()), (400, "malformed_request"));
    let bad_line = "GET /health HTTP/1.1 extra\r\n\r\n";
    assert_error(exchange(address, bad_line.as_bytes()), (400, "malformed_request"));
    let (status, body) = server.request("GET", "/health", None);
    assert_eq!(status, 200, "still serving: {body}");
}

#[test]
fn paths_with_a_bad_percent_encoding_or_not_utf8_are_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let event = serde_json::json!({"expected_revision": "any", "events": [{"type": "Named", "data": {}}]});
    let (status, body) = server.append("a%ZZ", &event);
    assert_error((status, body.clone()), (400, "invalid_path"));
    assert!(body["message"].as_str().unwrap().contains("%ZZ"), "the message names the bad encoding: {body}");
    assert_error(server.request("GET", "/v1/streams/a%ZZ", None), (400, "invalid_path"));
    let (status, body) = server.request("GET", "/v1/streams/a%FF%FE", None);
    assert_error((status, body.clone()), (400, "invalid_path"));
    assert!(body["message"].as_str().unwrap().contains("UTF-8"), "{body}");
    // Valid encodings still name streams.
    let (status, body) = server.append("caf%C3%A9-1", &event);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.request("GET", "/v1/streams/caf%C3%A9-1", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["stream"], "café-1", "{body}");
    let (status, body) = server.request("GET", "/v1/all?from=0", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "only the valid name was written: {body}");
}
