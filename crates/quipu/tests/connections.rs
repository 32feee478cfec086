//! The doors close what clients leave hanging: on HTTP a request whose
//! headers never finish (slowloris) and a kept-alive connection left idle,
//! on the gRPC and KurrentDB ports a connection that never finishes its
//! preface, each after `--http-header-timeout-s`; on the Kafka door a
//! request left unfinished for as long, and a connection idle past
//! `--kafka-idle-timeout-s`. They go on serving others. A server out of
//! file descriptors fails only the appends whose segment roll it hit,
//! telling them nothing was written, and goes on once descriptors free.
//! Each door holds at most `--max-connections` connections: one more is
//! closed at once (HTTP: answered 503 `server_busy` first), and the door
//! takes connections again once one closes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, serve_command};

/// Far longer than the one-second timeout the server is given.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// Reads `stream` until the server closes it; what it sent first, as
/// text. Panics when the server keeps it open past [`READ_LIMIT`].
fn read_until_closed(stream: &mut TcpStream) -> String {
    String::from_utf8_lossy(&bytes_until_closed(stream)).into_owned()
}

/// As [`read_until_closed`], the bytes as they came.
fn bytes_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(READ_LIMIT)).expect("set a read timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return received,
            Err(error) => panic!("the server kept the connection open ({error}) after sending {received:?}"),
        }
    }
}

#[test]
fn unfinished_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--http-header-timeout-s", "1"])
        .arg("--data-dir")
        .arg(dir.path());
    let server = Server::spawn(command);

    let mut slow = TcpStream::connect(&server.address).expect("connect");
    slow.write_all(b"GET /v1/all HTTP/1.1\r\nHost: quipu\r\n").expect("half a request");
    let answer = read_until_closed(&mut slow);
    assert!(!answer.contains("200 OK"), "an unfinished request is not answered: {answer:?}");

    let mut idle = TcpStream::connect(&server.address).expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: quipu\r\n\r\n").expect("a whole request");
    let answer = read_until_closed(&mut idle);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request is answered before the idle connection closes: {answer:?}"
    );

    // The gRPC port: a connection silent from the start, and one that
    // stops halfway through the native preface.
    for opening in [&b""[..], b"QUI"] {
        let mut quiet = TcpStream::connect(&server.grpc_address).expect("connect");
        quiet.write_all(opening).expect("the opening bytes");
        read_until_closed(&mut quiet);
    }

    let (status, body) = server.request("GET", "/health", None);
    assert_eq!(status, 200, "others are still served: {body}");
}

/// A Kafka ApiVersions v0 request with correlation id `correlation`,
/// framed.
fn api_versions_request(correlation: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // version 0
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    let mut frame = i32::try_from(body.len()).expect("a small frame").to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn the_kurrentdb_and_kafka_doors_close_unfinished_openings_requests_and_idle_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--http-header-timeout-s", "1"])
        .args(["--kafka-listen", "127.0.0.1:0", "--kafka-idle-timeout-s", "2"])
        .args(["--kurrent-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    let server = Server::spawn(command);
    let kafka = server.kafka_address.clone().expect("the Kafka door is on");
    let kurrent = server.kurrent_address.clone().expect("the KurrentDB door is on");

    // HTTP/2 ports: silent, and half of the HTTP/2 preface.
    for address in [&server.grpc_address, &kurrent] {
        for opening in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
            let mut quiet = TcpStream::connect(address).expect("connect");
            quiet.write_all(opening).expect("the opening bytes");
            read_until_closed(&mut quiet);
        }
    }

    // Kafka: a request cut short, a connection silent from the start, and
    // one answered and then left idle.
    let mut cut = TcpStream::connect(&kafka).expect("connect");
    let request = api_versions_request(1);
    cut.write_all(request.get(..7).expect("part of a request")).expect("part of a request");
    assert!(read_until_closed(&mut cut).is_empty(), "an unfinished request is not answered");
    let mut silent = TcpStream::connect(&kafka).expect("connect");
    read_until_closed(&mut silent);
    let mut idle = TcpStream::connect(&kafka).expect("connect");
    idle.write_all(&api_versions_request(7)).expect("a whole request");
    let answer = bytes_until_closed(&mut idle);
    assert_eq!(answer.get(4..8), Some(&7i32.to_be_bytes()[..]), "answered before the idle close: {answer:?}");

    let mut fresh = TcpStream::connect(&kafka).expect("connect");
    fresh.write_all(&api_versions_request(9)).expect("a whole request");
    let mut head = [0u8; 8];
    fresh.set_read_timeout(Some(READ_LIMIT)).expect("set a read timeout");
    fresh.read_exact(&mut head).expect("an answer");
    assert_eq!(head.get(4..), Some(&9i32.to_be_bytes()[..]), "the Kafka door still answers");
    let (status, body) = server.request("GET", "/health", None);
    assert_eq!(status, 200, "others are still served: {body}");
}

/// One HTTP/1.1 request on a kept-alive connection; the status and body.
fn request_kept_alive(stream: &mut TcpStream, host: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the server closed the connection: {received:?}");
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Appends one event with id `n` to stream `load-n`, as a client that
/// sends it again with the same id after a failure.
fn append_numbered(stream: &mut TcpStream, host: &str, n: u32) -> (u16, String) {
    let body = serde_json::json!({"expected_revision": "no_stream", "events": [{
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "type": "Loaded",
        "data": {"padding": "x".repeat(300)},
    }]});
    request_kept_alive(stream, host, "POST", &format!("/v1/streams/load-{n}"), &body.to_string())
}

#[test]
fn running_out_of_file_descriptors_fails_only_the_appends_it_hits() {
    // Few descriptors, small segments (a roll every dozen appends), and
    // idle connections held open long enough to use every descriptor.
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("prlimit");
    command
        .args(["--nofile=128:128", env!("CARGO_BIN_EXE_quipu"), "serve"])
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--segment-size-bytes", "4096", "--http-header-timeout-s", "120"])
        // More connections than descriptors: this test runs the store out
        // of them, which the default cap (a share of the limit) prevents.
        .args(["--max-connections", "1000"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let server = Server::spawn(command);
    let mut client = TcpStream::connect(&server.address).unwrap();
    let mut written = Vec::new();
    for n in 0..5 {
        let (status, body) = append_numbered(&mut client, &server.address, n);
        assert_eq!(status, 200, "{body}");
        written.push(n);
    }
    let idle: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(&server.address).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(1));
    // Appends go on until a roll finds no descriptor for the new segment.
    let mut refused = None;
    for n in 5..200 {
        let (status, body) = append_numbered(&mut client, &server.address, n);
        if status == 200 {
            written.push(n);
            continue;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("store_unavailable") && body.contains("nothing was written"), "{body}");
        refused = Some(n);
        break;
    }
    let refused = refused.expect("a segment roll ran out of descriptors");
    drop(idle);
    // With descriptors back, the same append (same id) goes through, and
    // appends go on.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = append_numbered(&mut client, &server.address, refused);
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "appends did not resume: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    written.push(refused);
    for n in 1000..1030 {
        let (status, body) = append_numbered(&mut client, &server.address, n);
        assert_eq!(status, 200, "{body}");
        written.push(n);
    }
    let (status, body) = request_kept_alive(&mut client, &server.address, "GET", "/v1/all?from=0&limit=10000", "");
    assert_eq!(status, 200, "{body}");
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut served: Vec<String> =
        all["events"].as_array().unwrap().iter().map(|e| e["stream"].as_str().unwrap().to_owned()).collect();
    served.sort();
    let mut expected: Vec<String> = written.iter().map(|n| format!("load-{n}")).collect();
    expected.sort();
    assert_eq!(served, expected, "every acknowledged append once, the refused one only as sent again");
}

/// The HTTP/2 preface and an empty SETTINGS frame: what an HTTP/2 client
/// sends first, which a server answers with its own SETTINGS.
const HTTP2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What a client of each door sends first, which the door answers.
fn opening_of(door: &str) -> Vec<u8> {
    match door {
        "http" => b"GET /health HTTP/1.1\r\nHost: quipu\r\nConnection: close\r\n\r\n".to_vec(),
        "kafka" => api_versions_request(3),
        _ => HTTP2_OPENING.to_vec(),
    }
}

/// Whether the door at `address` serves a new connection: answers its
/// opening (HTTP: with a 200).
fn serves(address: &str, door: &str) -> bool {
    let answer = first_answer(address, door);
    if door == "http" { answer.starts_with(b"HTTP/1.1 200") } else { !answer.is_empty() }
}

/// The first bytes the door at `address` answers a new connection's
/// opening with; empty when it closes the connection without a word.
fn first_answer(address: &str, door: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect");
    // The door may close before it reads the opening.
    let _ = stream.write_all(&opening_of(door));
    stream.set_read_timeout(Some(READ_LIMIT)).expect("set a read timeout");
    let mut buffer = [0u8; 4096];
    match stream.read(&mut buffer) {
        Ok(n) => buffer.get(..n).unwrap_or_default().to_vec(),
        Err(error) if error.kind() == ErrorKind::ConnectionReset => Vec::new(),
        Err(error) => panic!("the {door} door neither answered nor closed: {error}"),
    }
}

#[test]
fn each_door_refuses_connections_over_its_cap_and_takes_more_once_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--max-connections", "3"])
        // Long enough that the held connections stay open all along.
        .args(["--http-header-timeout-s", "120", "--kafka-listen", "127.0.0.1:0"])
        .args(["--kurrent-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    let server = Server::spawn(command);
    let doors = [
        ("http", server.address.clone()),
        ("grpc", server.grpc_address.clone()),
        ("kurrent", server.kurrent_address.clone().expect("the KurrentDB door is on")),
        ("kafka", server.kafka_address.clone().expect("the Kafka door is on")),
    ];
    for (door, address) in &doors {
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(address).expect("connect")).collect();
        // Accepted after the three held ones, so over the cap.
        let mut over = TcpStream::connect(address).expect("connect");
        let _ = over.write_all(&opening_of(door));
        let refusal = read_until_closed(&mut over);
        if *door == "http" {
            assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal:?}");
            let body = refusal.split_once("\r\n\r\n").expect("a head and a body").1;
            let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
            assert_eq!(body["code"], "server_busy", "{body}");
            assert!(body["message"].as_str().unwrap().contains("--max-connections"), "{body}");
        } else {
            assert!(refusal.is_empty(), "the {door} door closes a connection over its cap unanswered: {refusal:?}");
        }
        drop(held);
        // The door sees the held connections close in its own time.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !serves(address, door) {
            assert!(std::time::Instant::now() < deadline, "the {door} door takes no connection after others closed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
