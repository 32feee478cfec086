//! One client connection to the bench server, over gRPC or HTTP/JSON,
//! with the two operations the `server` workload times: an append with
//! the exact expected revision a `writer` states, and the load of a whole
//! stream (checked as `readers` checks in-process loads). A request is
//! built before its clock starts ([`Connection::request`]), as the
//! in-process workloads build theirs, so latency covers the round trip.

use anyhow::Context;
use hyper::StatusCode;
use quipu_client::{Client, Direction, ExpectedRevision, NewEvent, RetryPolicy};
use quipu_core::{EventId, Revision};
use serde::Deserialize;

use super::http_connection::HttpConnection;
use super::interleaved::EVENTS_PER_STREAM;
use super::payload::{EVENT_TYPE, data};
use super::readers;
use super::server::Addresses;
use super::writer::Ack;

/// How a connection reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `quipu.v1.Streams` through [`quipu_client::Client`], one HTTP/2
    /// connection each.
    Grpc,
    /// The HTTP/JSON API over one keep-alive HTTP/1.1 connection each.
    Http,
}

impl Protocol {
    /// Both, in the order results print.
    pub const ALL: [Protocol; 2] = [Protocol::Grpc, Protocol::Http];

    /// The name on result lines.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// An append ready to send.
pub enum Request {
    /// For a gRPC connection.
    Grpc {
        /// The stream.
        stream: String,
        /// Its exact expected revision.
        expected: ExpectedRevision,
        /// The events.
        events: Vec<NewEvent>,
    },
    /// For an HTTP connection: `POST path` with the JSON `body`.
    Http {
        /// `/v1/streams/{stream}`.
        path: String,
        /// `{"expected_revision": ..., "events": [...]}`.
        body: String,
    },
}

/// An open connection.
pub enum Connection {
    /// A gRPC client with its own channel.
    Grpc(Box<Client>),
    /// An HTTP/1.1 connection.
    Http(HttpConnection),
}

/// The part of a 200 answer to an append that a writer needs.
#[derive(Deserialize)]
struct WrittenJson {
    /// The stream's revision after the append.
    next_expected_revision: u64,
    /// True when the ids were written before (never, for fresh ids).
    already_written: bool,
}

/// The part of a 409 answer that a writer needs.
#[derive(Deserialize)]
struct ConflictJson {
    /// `wrong_expected_revision` for a conflict of the expected revision.
    code: String,
    /// The stream's actual last revision.
    #[serde(default)]
    actual: Option<u64>,
}

/// The part of a stream read's answer that the load check needs.
#[derive(Deserialize)]
struct LoadedJson {
    /// The events read, in order.
    events: Vec<LoadedEventJson>,
}

/// One event of a stream read, as far as the check goes.
#[derive(Deserialize)]
struct LoadedEventJson {
    /// Its stream.
    stream: String,
    /// Its revision in the stream.
    revision: u64,
}

impl Connection {
    /// Opens a connection of `protocol` to the server at `addresses`. A
    /// gRPC client does not retry: a failed call fails the run.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn open(protocol: Protocol, addresses: Addresses) -> anyhow::Result<Connection> {
        Ok(match protocol {
            Protocol::Grpc => {
                let client = Client::connect(format!("http://{}", addresses.grpc)).await?;
                Connection::Grpc(Box::new(client.with_retry(RetryPolicy::none())))
            }
            Protocol::Http => Connection::Http(HttpConnection::open(addresses.http).await?),
        })
    }

    /// An append of `events` new events (the bench payload) to `stream`,
    /// expected at `last` (`None`: no stream yet).
    #[must_use]
    pub fn request(&self, stream: String, last: Option<Revision>, events: u64) -> Request {
        match self {
            Connection::Grpc(_) => Request::Grpc {
                stream,
                expected: ExpectedRevision::from_last(last),
                events: (0..events).map(|n| NewEvent::new(EVENT_TYPE, data(n))).collect(),
            },
            Connection::Http(_) => {
                Request::Http { body: append_body(last, events), path: format!("/v1/streams/{stream}") }
            }
        }
    }

    /// Sends `request` and waits for its answer: written (with the new
    /// revision) or refused by the expected revision (with the actual one).
    ///
    /// # Errors
    /// Any other answer, a failed connection, or a request for the other
    /// protocol.
    pub async fn append(&mut self, request: Request) -> anyhow::Result<Ack> {
        match (self, request) {
            (Connection::Grpc(client), Request::Grpc { stream, expected, events }) => {
                grpc_ack(client.append(stream, expected, events).await)
            }
            (Connection::Http(http), Request::Http { path, body }) => {
                let (status, answer) = http.post_json(&path, body).await?;
                http_ack(status, &answer)
            }
            _ => anyhow::bail!("an append request was built for another protocol"),
        }
    }

    /// Loads the whole of `stream` (its `EVENTS_PER_STREAM` events) in one
    /// read and checks it.
    ///
    /// # Errors
    /// The read fails, or the stream does not come back whole and in order.
    pub async fn load(&mut self, stream: &str) -> anyhow::Result<()> {
        match self {
            Connection::Grpc(client) => {
                let events = client.read_stream(stream, None, Direction::Forwards, EVENTS_PER_STREAM as u32).await?;
                readers::ensure_whole(stream, events.iter().map(|e| (e.stream.as_str(), e.revision.0)))
            }
            Connection::Http(http) => {
                let (status, answer) = http.get(&format!("/v1/streams/{stream}?limit={EVENTS_PER_STREAM}")).await?;
                anyhow::ensure!(status == StatusCode::OK, "reading {stream} answered {status}: {}", text(&answer));
                let loaded: LoadedJson = serde_json::from_slice(&answer).context("parsing a stream read")?;
                readers::ensure_whole(stream, loaded.events.iter().map(|e| (e.stream.as_str(), e.revision)))
            }
        }
    }
}

/// The body of `POST /v1/streams/{stream}`: `events` bench events with
/// fresh ids, expected at `last`. Written by hand: the payload is already
/// JSON text and goes in as it is.
fn append_body(last: Option<Revision>, events: u64) -> String {
    let expected = last.map_or_else(|| "\"no_stream\"".to_string(), |r| r.0.to_string());
    let mut body = format!("{{\"expected_revision\":{expected},\"events\":[");
    for n in 0..events {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&format!("{{\"id\":\"{}\",\"type\":\"{EVENT_TYPE}\",\"data\":{}}}", EventId::random(), data(n)));
    }
    body.push_str("]}");
    body
}

/// A writer's view of a gRPC append's result.
fn grpc_ack(result: Result<quipu_client::AppendResult, quipu_client::Error>) -> anyhow::Result<Ack> {
    match result {
        Ok(written) => {
            anyhow::ensure!(!written.already_written, "fresh event ids were reported as already written");
            let last = written.next_expected_revision().context("a written append reported no stream")?;
            Ok(Ack::Written(last))
        }
        Err(quipu_client::Error::Conflict { conflict, .. }) => {
            Ok(Ack::Conflict(conflict.streams.first().and_then(|s| s.actual)))
        }
        Err(error) => Err(error.into()),
    }
}

/// A writer's view of an HTTP append's answer.
fn http_ack(status: StatusCode, answer: &[u8]) -> anyhow::Result<Ack> {
    match status {
        StatusCode::OK => {
            let written: WrittenJson = serde_json::from_slice(answer).context("parsing an append answer")?;
            anyhow::ensure!(!written.already_written, "fresh event ids were reported as already written");
            Ok(Ack::Written(Revision(written.next_expected_revision)))
        }
        StatusCode::CONFLICT => {
            let conflict: ConflictJson = serde_json::from_slice(answer).context("parsing a conflict answer")?;
            anyhow::ensure!(conflict.code == "wrong_expected_revision", "an append answered 409: {}", text(answer));
            Ok(Ack::Conflict(conflict.actual.map(Revision)))
        }
        other => anyhow::bail!("an append answered {other}: {}", text(answer)),
    }
}

/// An answer body for an error message.
fn text(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_body_is_what_the_server_takes() {
        for (last, expected) in [
            (None, quipu_core::ExpectedRevision::NoStream),
            (Some(Revision(7)), quipu_core::ExpectedRevision::Exact(Revision(7))),
        ] {
            let body: quipu_http::wire::AppendBody =
                serde_json::from_str(&append_body(last, 3)).expect("the server's append shape");
            assert_eq!(quipu_http::wire::expected_revision(body.expected_revision.as_ref()).expect("valid"), expected);
            assert_eq!(body.events.len(), 3);
            for event in body.events {
                let event = event.into_proposed().expect("a valid event");
                assert_eq!(event.event_type.as_str(), EVENT_TYPE);
                assert_eq!(event.data.len(), super::super::payload::EVENT_DATA_BYTES);
            }
        }
    }

    #[test]
    fn both_protocols_append_conflict_and_load_through_a_served_store() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = quipu_core::Store::open(dir.path(), quipu_core::Options::default()).expect("a store");
        let server = super::super::server::Server::start(store).expect("a server");
        let addresses = server.addresses();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            for protocol in Protocol::ALL {
                let mut connection = Connection::open(protocol, addresses).await.expect("a connection");
                let stream = format!("entity-{}", protocol.name());
                let request = connection.request(stream.clone(), None, EVENTS_PER_STREAM);
                let last = Revision(EVENTS_PER_STREAM - 1);
                assert_eq!(connection.append(request).await.expect("written"), Ack::Written(last), "{protocol:?}");
                let stale = connection.request(stream.clone(), None, 1);
                assert_eq!(connection.append(stale).await.expect("refused"), Ack::Conflict(Some(last)), "{protocol:?}");
                connection.load(&stream).await.expect("the whole stream");
            }
        });
        drop(runtime);
        server.stop().expect("a clean stop");
    }

    #[test]
    fn a_conflict_answer_gives_the_actual_revision() {
        let ack =
            http_ack(StatusCode::CONFLICT, br#"{"code":"wrong_expected_revision","actual":4}"#).expect("a conflict");
        assert_eq!(ack, Ack::Conflict(Some(Revision(4))));
        let ack =
            http_ack(StatusCode::CONFLICT, br#"{"code":"wrong_expected_revision","actual":null}"#).expect("a conflict");
        assert_eq!(ack, Ack::Conflict(None));
        assert!(http_ack(StatusCode::CONFLICT, br#"{"code":"event_id_reused"}"#).is_err());
        assert!(http_ack(StatusCode::BAD_REQUEST, b"{}").is_err());
    }
}
