//! The doors close what clients leave hanging: on HTTP a request whose
//! headers never finish (slowloris) and a kept-alive connection left idle,
//! on the gRPC port a connection that never finishes its preface, each
//! after `--http-header-timeout-s`, and go on serving others.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, serve_command};

/// Far longer than the one-second timeout the server is given.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// Reads `stream` until the server closes it; what it sent first. Panics
/// when the server keeps it open past [`READ_LIMIT`].
fn read_until_closed(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(READ_LIMIT)).expect("set a read timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&received).into_owned();
            }
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
