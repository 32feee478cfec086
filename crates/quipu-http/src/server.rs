//! The HTTP door's connections: HTTP/1.1 on the router, each connection
//! a task of its own, with a limit on how long a request's headers may
//! take to arrive, which is also how long a kept-alive connection may sit
//! idle between requests, so a client that opens connections and never
//! finishes a request (slowloris) holds nothing for long.
//!
//! The door holds at most its [`ConnectionCap`] of connections open; one
//! more is answered `503 server_busy` (JSON) and closed. Requests that
//! hyper cannot parse get its automatic answers with JSON bodies (see
//! [`crate::automatic_answer`]).
//!
//! On the stop signal it takes no more connections and asks the open
//! ones to finish the request in hand and close; the server bounds how
//! long it waits for them (see `quipu_server::SHUTDOWN_GRACE`).

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use quipu_node::connection_cap::ConnectionCap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long the HTTP door waits after a failed accept (out of file
/// descriptors, say) before it accepts again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// How long a refused connection is given to take its `503` before it
/// is closed: what it sent meanwhile is read and dropped, so the close
/// does not reset the connection before the client reads the answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `stopping` turns true, then waits
/// for the open connections to finish; each connection must send its
/// request headers within `header_timeout`, and at most `cap` are open at
/// once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    cap: Arc<ConnectionCap>,
    stopping: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(crate::automatic_answer::HEADER_BYTES_MAX);
    let graceful = GracefulShutdown::new();
    let mut stopping = stopping;
    // The channel's guard ends inside this future, never held across an
    // await of the loop.
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting an HTTP connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Some(permit) = cap.admit() else {
            tokio::spawn(refuse(socket, cap.connections_max()));
            continue;
        };
        // Answers go out at once: without TCP_NODELAY a response's last
        // small segment waits for the client's delayed ACK (about 40 ms).
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY on an HTTP connection");
        }
        let socket = TokioIo::new(crate::automatic_answer::JsonAnswers::new(socket));
        let connection = builder.serve_connection(socket, TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

/// Answers `503 server_busy` on `socket`, a connection over the door's
/// cap of `connections_max`, and closes it.
async fn refuse(mut socket: TcpStream, connections_max: usize) {
    let body = serde_json::json!({
        "code": quipu_node::ErrorCode::ServerBusy.as_str(),
        "message": format!(
            "the HTTP door holds its cap of {connections_max} open connections (--max-connections); retry shortly"
        ),
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    if socket.write_all(answer.as_bytes()).await.is_err() || socket.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(socket.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}
