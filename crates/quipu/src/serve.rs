//! `quipu serve`: opens the data directory and serves it over HTTP/JSON on
//! loopback by default. Binding another address needs `--insecure` until
//! authentication exists, and logs a warning. SIGTERM or Ctrl-C stops it
//! gracefully: no new connections, in-flight requests finish, the store
//! closes, exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use quipu_core::{Options, Store};

/// Arguments of `quipu serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Data directory (created when missing).
    #[arg(long, default_value = "./quipu-data", env = "QUIPU_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the HTTP/JSON API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2114", env = "QUIPU_HTTP_LISTEN")]
    pub http_listen: SocketAddr,
    /// Allow a non-loopback address without authentication (unsafe).
    #[arg(long)]
    pub insecure: bool,
}

/// Runs the server until a stop signal.
///
/// # Errors
/// A refused address, a store that does not open, or a listener failure.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    if !args.http_listen.ip().is_loopback() {
        anyhow::ensure!(
            args.insecure,
            "refusing to serve on {} without authentication; bind a loopback address or pass --insecure",
            args.http_listen
        );
        tracing::warn!(address = %args.http_listen, "serving without authentication on a non-loopback address (--insecure)");
    }
    let store = Store::open(&args.data_dir, Options::default())
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.http_listen)
            .await
            .with_context(|| format!("binding {}", args.http_listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        // One line on stdout that scripts and tests can wait for.
        println!("quipu listening http={address} data_dir={}", args.data_dir.display());
        tracing::info!(http = %address, data_dir = %args.data_dir.display(), "serving");
        quipu_server::serve(store, listener, stop_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stop signal received; finishing in-flight requests");
}
