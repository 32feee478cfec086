//! The HTTP door's connections: HTTP/1.1 on the router, each connection
//! a task of its own, with a limit on how long a request's headers may
//! take to arrive, which is also how long a kept-alive connection may sit
//! idle between requests, so a client that opens connections and never
//! finishes a request (slowloris) holds nothing for long.
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
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the HTTP door waits after a failed accept (out of file
/// descriptors, say) before it accepts again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stopping` turns true, then waits
/// for the open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, header_timeout: Duration, stopping: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
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
        // Answers go out at once: without TCP_NODELAY a response's last
        // small segment waits for the client's delayed ACK (about 40 ms).
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY on an HTTP connection");
        }
        let connection = builder.serve_connection(TokioIo::new(socket), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "HTTP connection ended");
            }
        });
    }
    graceful.shutdown().await;
}
