//! Connections that acknowledge what they read at once (`TCP_QUICKACK`
//! after each read, on Linux).
//!
//! KurrentDB's Node.js client reads through a Rust client that turns
//! Nagle's algorithm on for its connection: it writes a call's headers,
//! then holds the request body until the headers are acknowledged. The
//! server has nothing to answer before it has the body, so Linux delays
//! that acknowledgement, 40 ms each call. Acknowledging at once costs one
//! system call per read and takes those 40 ms away.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TCP connection that acknowledges each read at once.
pub struct QuickAck(TcpStream);

impl QuickAck {
    /// Wraps `stream`.
    #[must_use]
    pub fn new(stream: TcpStream) -> QuickAck {
        QuickAck(stream)
    }

    /// Asks the kernel to acknowledge now; the kernel may fall back to
    /// delaying later, which is why this runs after every read.
    fn acknowledge(&self) {
        #[cfg(target_os = "linux")]
        {
            // Best effort: a socket that refuses only loses the speed-up.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.acknowledge();
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connected for QuickAck {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}
