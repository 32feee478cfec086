//! The server the `server` workload measures: a store served in this
//! process by [`quipu_server::serve`], gRPC and HTTP each on a free
//! loopback port, on a tokio runtime of its own. The clients (see
//! `clients`) run on another runtime, as a client process would, so the
//! two share the machine's cores but not a scheduler.

use std::net::SocketAddr;

use anyhow::Context;
use quipu_core::Store;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Where the server answers.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// gRPC (`quipu.v1.Streams`).
    pub grpc: SocketAddr,
    /// HTTP/JSON.
    pub http: SocketAddr,
    /// The Kafka door (4 partitions per category).
    pub kafka: SocketAddr,
}

/// A running server; [`Server::stop`] ends it.
pub struct Server {
    runtime: Runtime,
    addresses: Addresses,
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), quipu_server::ServerError>>,
}

impl Server {
    /// Serves `store` until [`Server::stop`]; the server owns the store
    /// and closes it when it stops.
    ///
    /// # Errors
    /// The runtime does not start or a loopback port cannot be bound.
    pub fn start(store: Store) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-server")
            .build()
            .context("starting the server runtime")?;
        let (grpc, http, kafka) = runtime.block_on(async {
            let bind = |what: &'static str| async move {
                tokio::net::TcpListener::bind("127.0.0.1:0").await.with_context(|| format!("binding the {what} port"))
            };
            anyhow::Ok((bind("gRPC").await?, bind("HTTP").await?, bind("Kafka").await?))
        })?;
        let addresses = Addresses {
            grpc: grpc.local_addr().context("reading the gRPC address")?,
            http: http.local_addr().context("reading the HTTP address")?,
            kafka: kafka.local_addr().context("reading the Kafka address")?,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        };
        let node = {
            // The node's feeds follow the store on this runtime.
            let _entered = runtime.enter();
            quipu_server::Node::open(store).context("opening the bench node")?
        };
        let door = quipu_kafka::Door::new(&node, quipu_kafka::DoorConfig::default()).context("the Kafka door")?;
        let kafka = quipu_server::OtherDoor {
            name: "Kafka",
            serving: Box::pin(quipu_kafka::serve(std::sync::Arc::new(door), kafka, node.stopping())),
        };
        let listeners = quipu_server::Listeners { grpc, http, kurrent: None };
        let limits = quipu_server::ConnectionLimits::default();
        let serving = runtime.spawn(quipu_server::serve_node(node, listeners, shutdown, limits, vec![kafka]));
        Ok(Server { runtime, addresses, stop, serving })
    }

    /// Where the server answers.
    #[must_use]
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Stops accepting, waits for in-flight requests, and closes the
    /// store; then ends the runtime. When this returns, the store's
    /// directory is free to open again.
    ///
    /// # Errors
    /// The server failed while serving or the store did not close cleanly.
    pub fn stop(self) -> anyhow::Result<()> {
        let Server { runtime, stop, serving, .. } = self;
        // Sending fails only when the server already ended; its result says why.
        let _ = stop.send(());
        let served = runtime.block_on(serving);
        // `serve` leaves the store to whatever still holds it (a read on
        // the blocking pool); dropping the runtime ends every task and
        // waits for that pool, so the last holder closes it here.
        drop(runtime);
        served.context("the server task panicked")?.context("serving the bench store")
    }
}

/// Serves a fresh store named `name` in this process and runs `measure`
/// with its gRPC address on a client runtime of its own; stops both and
/// removes the store (unless kept).
///
/// # Errors
/// Store, server or `measure`'s errors.
pub fn with_server<Fut>(bench: &super::Bench, name: &str, measure: impl FnOnce(String) -> Fut) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_addresses(bench, name, |addresses| measure(format!("http://{}", addresses.grpc)))
}

/// As [`with_server`], giving `measure` every address of the server.
///
/// # Errors
/// Store, server or `measure`'s errors.
pub fn with_addresses<Fut>(
    bench: &super::Bench,
    name: &str,
    measure: impl FnOnce(Addresses) -> Fut,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let dir = bench.store_dir(name)?;
    let server = Server::start(Store::open(&dir, quipu_core::Options::default())?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("bench-{name}"))
        .build()
        .context("starting the client runtime")?;
    let result = runtime.block_on(measure(server.addresses()));
    drop(runtime);
    let stopped = server.stop();
    result?;
    stopped?;
    bench.finish_store(&dir)
}
