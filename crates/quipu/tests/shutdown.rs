//! SIGTERM ends the server within its documented bound whatever its
//! connections do: half-open ones that never send a byte, requests whose
//! headers never finish, protocol prefaces cut short, and subscribers
//! that never read. Every door is on.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

/// The shutdown bound the server documents (`--shutdown-grace`, 10 s by
/// default) and room for the store to close.
const EXIT_BOUND: Duration = Duration::from_secs(25);

/// A connection to `address` that has sent `bytes` and then goes quiet,
/// never reading.
fn quiet_connection(address: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream.write_all(bytes).expect("send the opening bytes");
    stream
}

#[test]
fn sigterm_exits_0_in_time_with_a_pathological_connection_of_each_kind_open_on_every_door() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with_every_door(dir.path());
    let kafka = server.kafka_address.clone().expect("the Kafka door is on");
    let kurrent = server.kurrent_address.clone().expect("the KurrentDB door is on");
    let big = "x".repeat(60_000);
    let event = |n: usize| json!({"type": "Noted", "data": {"n": n, "pad": big}});
    for n in 0..5 {
        let (status, body) = server.append("order-1", &json!({"events": [event(n)]}));
        assert_eq!(status, 200, "{body}");
    }
    let held = [
        // HTTP: headers never finished (slowloris), and nothing at all.
        quiet_connection(&server.address, b"GET /v1/all HTTP/1.1\r\nHost: quipu\r\n"),
        quiet_connection(&server.address, b""),
        // HTTP: a subscriber that never reads what it asked for.
        quiet_connection(&server.address, b"GET /v1/subscribe?from=0 HTTP/1.1\r\nHost: quipu\r\n\r\n"),
        // gRPC port: nothing, half of the HTTP/2 preface, half of the
        // native one.
        quiet_connection(&server.grpc_address, b""),
        quiet_connection(&server.grpc_address, b"PRI * HTTP/2.0\r\n"),
        quiet_connection(&server.grpc_address, b"QUI"),
        // KurrentDB door: nothing, half of the HTTP/2 preface.
        quiet_connection(&kurrent, b""),
        quiet_connection(&kurrent, b"PRI * HTTP/2.0\r\n"),
        // Kafka door: nothing, the length of a request and no request.
        quiet_connection(&kafka, b""),
        quiet_connection(&kafka, &[0, 0, 0, 100]),
    ];
    // Enough for the silent subscriber's socket buffers to fill.
    for n in 5..100 {
        let (status, body) = server.append("order-1", &json!({"events": [event(n)]}));
        assert_eq!(status, 200, "{body}");
    }
    let asked = Instant::now();
    server.signal("TERM");
    let exited = server.wait_for(EXIT_BOUND);
    let took = asked.elapsed();
    drop(held);
    let status = exited.unwrap_or_else(|| panic!("quipu serve still ran {took:?} after SIGTERM"));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0 ({status})");
    // The store closed cleanly: it opens again with every event.
    let server = Server::start(dir.path());
    let (status, page) = server.request("GET", "/v1/streams/order-1?limit=1000", None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(100), "every acknowledged event is there");
}
