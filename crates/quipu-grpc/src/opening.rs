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
//!   vanished without closing is noticed and its connection closed;
//! - a port holds at most its [`ConnectionCap`] of connections: one more
//!   is closed as soon as it is accepted, and each connection handed on
//!   is [`Admitted`], holding its place until it closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quipu_node::connection_cap::{ConnectionCap, ConnectionPermit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

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
/// `sort` on each within `cap`, on a task of its own, with its place
/// under the cap; a connection over the cap is closed at once.
pub fn accept_each<S, F>(listener: TcpListener, mut stopping: watch::Receiver<bool>, cap: Arc<ConnectionCap>, sort: S)
where
    S: Fn(TcpStream, SocketAddr, ConnectionPermit) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match accepted {
                Ok((socket, peer)) => match cap.admit() {
                    Some(permit) => {
                        tokio::spawn(sort(socket, peer, permit));
                    }
                    None => drop(socket),
                },
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
/// `keepalive`, at most `cap` at once: the incoming stream of an HTTP/2
/// (or TLS) server. Others are closed.
pub fn http2_incoming(
    listener: TcpListener,
    stopping: watch::Receiver<bool>,
    limit: Duration,
    keepalive: Duration,
    cap: Arc<ConnectionCap>,
) -> impl futures_util::Stream<Item = std::io::Result<Admitted>> + Send + 'static {
    let (sender, receiver) = mpsc::channel::<Admitted>(ACCEPT_QUEUE);
    accept_each(listener, stopping, cap, move |socket, peer, permit| {
        let sender = sender.clone();
        async move {
            match prepared(&socket, HTTP2_PREFACE_BYTES, limit, keepalive).await {
                Ok(true) => {
                    // The server is stopping when it takes no more.
                    let _ = sender.send(Admitted::new(socket, permit)).await;
                }
                Ok(false) => tracing::debug!(%peer, "a connection sent no preface in {limit:?}; closing it"),
                Err(error) => tracing::debug!(%peer, %error, "a connection failed before its preface"),
            }
        }
    });
    receiver_stream(receiver)
}

/// The stream of what `receiver` gets, as a server's incoming connections.
pub fn receiver_stream<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = std::io::Result<T>> + Send + 'static {
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

/// A connection handed to an HTTP/2 server, holding its place under its
/// port's cap until it closes.
pub struct Admitted {
    socket: TcpStream,
    _permit: ConnectionPermit,
    /// Whether each read is acknowledged at once (`TCP_QUICKACK`, on
    /// Linux), rather than when the kernel's delayed acknowledgement
    /// fires.
    quick_ack: bool,
}

impl Admitted {
    /// `socket`, holding `permit`.
    #[must_use]
    pub fn new(socket: TcpStream, permit: ConnectionPermit) -> Admitted {
        Admitted { socket, _permit: permit, quick_ack: false }
    }

    /// This connection, acknowledging what it reads at once: one system
    /// call per read, for clients that hold a request's body until its
    /// headers are acknowledged (see the KurrentDB door).
    #[must_use]
    pub fn with_quick_ack(self) -> Admitted {
        Admitted { quick_ack: true, ..self }
    }

    /// Asks the kernel to acknowledge now; the kernel may fall back to
    /// delaying later, which is why this runs after every read.
    fn acknowledge(&self) {
        #[cfg(target_os = "linux")]
        {
            // Best effort: a socket that refuses only loses the speed-up.
            let _ = socket2::SockRef::from(&self.socket).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.socket).poll_read(cx, buf);
        if self.quick_ack && matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.acknowledge();
        }
        read
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.socket.connect_info()
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
