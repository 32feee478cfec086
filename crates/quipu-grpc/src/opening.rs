//! How the gRPC and KurrentDB ports take a connection: accepted on a
//! loop that survives failed accepts, each connection sorted on a task of
//! its own, and closed when its opening bytes do not arrive in time.
//!
//! What it promises:
//! - a failed accept (out of file descriptors, say) is logged and retried
//!   after [`ACCEPT_RETRY`]; the port stays open;
//! - a connection that sends fewer than the bytes its protocol opens with
//!   (the HTTP/2 preface, a TLS client hello) within the limit is closed,
//!   without holding anything past the limit: a silent or half-open
//!   client never reaches the HTTP/2 server, which would wait for it for
//!   good;
//! - the connections handed on carry TCP keepalive probes, so a peer that
//!   vanished without closing is noticed and its connection closed.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a port waits after a failed accept before it accepts again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Bytes of the HTTP/2 connection preface, which every HTTP/2 client
/// sends first (a TLS client hello is longer too).
pub const HTTP2_PREFACE_BYTES: usize = 24;
/// Connections accepted and sorted but not yet taken by the HTTP/2
/// server.
const ACCEPT_QUEUE: usize = 1024;
/// Longest pause between two looks at an opening that is still partial.
const PEEK_PAUSE_MAX: Duration = Duration::from_millis(100);
/// Unanswered TCP keepalive probes after which the kernel gives up on a
/// connection.
const KEEPALIVE_PROBES: u32 = 3;

/// Accepts connections on `listener` until `stopping` turns true and runs
/// `sort` on each, on a task of its own.
pub fn accept_each<S, F>(listener: TcpListener, mut stopping: watch::Receiver<bool>, sort: S)
where
    S: Fn(TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match accepted {
                Ok((socket, peer)) => {
                    tokio::spawn(sort(socket, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    });
}

/// The connections of `listener` that send at least
/// [`HTTP2_PREFACE_BYTES`] within `limit`, with TCP keepalive probes every
/// `keepalive`: the incoming stream of an HTTP/2 (or TLS) server. Others
/// are closed.
pub fn http2_incoming(
    listener: TcpListener,
    stopping: watch::Receiver<bool>,
    limit: Duration,
    keepalive: Duration,
) -> impl futures_util::Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    let (sender, receiver) = mpsc::channel::<TcpStream>(ACCEPT_QUEUE);
    accept_each(listener, stopping, move |socket, peer| {
        let sender = sender.clone();
        async move {
            match prepared(&socket, HTTP2_PREFACE_BYTES, limit, keepalive).await {
                Ok(true) => {
                    // The server is stopping when it takes no more.
                    let _ = sender.send(socket).await;
                }
                Ok(false) => tracing::debug!(%peer, "a connection sent no preface in {limit:?}; closing it"),
                Err(error) => tracing::debug!(%peer, %error, "a connection failed before its preface"),
            }
        }
    });
    receiver_stream(receiver)
}

/// The stream of what `receiver` gets, as a server's incoming connections.
pub fn receiver_stream(
    mut receiver: mpsc::Receiver<TcpStream>,
) -> impl futures_util::Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|socket| socket.map(Ok)))
}

/// Sets `socket` up for serving (no delay, keepalive probes every
/// `keepalive`) and waits for its first `bytes` (see [`arrived`]).
///
/// # Errors
/// The socket fails.
pub async fn prepared(socket: &TcpStream, bytes: usize, limit: Duration, keepalive: Duration) -> std::io::Result<bool> {
    socket.set_nodelay(true)?;
    let probes =
        socket2::TcpKeepalive::new().with_time(keepalive).with_interval(keepalive).with_retries(KEEPALIVE_PROBES);
    socket2::SockRef::from(socket).set_tcp_keepalive(&probes)?;
    arrived(socket, bytes, limit).await
}

/// Waits until `socket` holds at least `bytes` unread bytes, without
/// taking them, for up to `limit`: true once they are there, false when
/// the peer closes first or the limit passes.
///
/// # Errors
/// The socket fails.
pub async fn arrived(socket: &TcpStream, bytes: usize, limit: Duration) -> std::io::Result<bool> {
    assert!(bytes > 0, "an opening of at least one byte");
    let deadline = Instant::now() + limit;
    let mut opening = vec![0u8; bytes];
    let mut pause = Duration::from_millis(1);
    loop {
        let Ok(peeked) = tokio::time::timeout_at(deadline, socket.peek(&mut opening)).await else {
            return Ok(false);
        };
        match peeked? {
            0 => return Ok(false),
            peeked if peeked >= bytes => return Ok(true),
            _ => {}
        }
        // Part of the opening so far: the rest is on its way. A peek
        // returns at once while anything is unread, so look again later.
        if Instant::now() + pause >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(PEEK_PAUSE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = TcpStream::connect(address).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn an_opening_counts_once_every_byte_is_there_in_any_pieces_and_is_left_unread() {
        let (mut client, server) = pair().await;
        client.write_all(b"PRI * HTTP").await.expect("write");
        let waiting = tokio::spawn(async move {
            let arrived = arrived(&server, HTTP2_PREFACE_BYTES, Duration::from_secs(10)).await;
            (arrived.expect("no socket error"), server)
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.write_all(b"/2.0\r\n\r\nSM\r\n\r\n").await.expect("write");
        let (arrived, server) = waiting.await.expect("the wait ends");
        assert!(arrived);
        let mut opening = [0u8; HTTP2_PREFACE_BYTES];
        assert_eq!(server.peek(&mut opening).await.expect("peek"), HTTP2_PREFACE_BYTES, "nothing was taken");
        assert_eq!(&opening, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    }

    #[tokio::test]
    async fn a_silent_or_partial_or_closed_opening_is_refused() {
        let limit = Duration::from_millis(200);
        let (_silent, server) = pair().await;
        assert!(!arrived(&server, HTTP2_PREFACE_BYTES, limit).await.expect("no socket error"));
        let (mut partial, server) = pair().await;
        partial.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        assert!(!arrived(&server, HTTP2_PREFACE_BYTES, limit).await.expect("no socket error"));
        let (closed, server) = pair().await;
        drop(closed);
        assert!(!arrived(&server, HTTP2_PREFACE_BYTES, limit).await.expect("no socket error"));
    }
}
