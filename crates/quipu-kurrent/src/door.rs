//! The door's server: its services on one listener, in plain text or in
//! TLS with the certificate the user gives.

use std::future::Future;
use std::sync::Arc;

use quipu_proto::event_store::client::{gossip, persistent_subscriptions, server_features, streams};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Identity, ServerTlsConfig};

use super::persistent::PersistentService;
use super::session::SessionService;
use super::streams::StreamsService;
use super::{FeaturesService, GossipService, unimplemented};
use quipu_grpc::ConnectionLimits;
use quipu_node::Node;
use quipu_node::group::Groups;

/// Why the door could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    /// The listener's address could not be read.
    #[error("the KurrentDB listener: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up.
    #[error("the KurrentDB door's TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// Serves the door over `node` on `listener`, taking messages up to
/// `message_max` bytes, until `stopping` turns true: [`Door::serve`] with
/// the node's services.
///
/// # Errors
/// As [`Door::serve`].
pub fn serve(
    node: &Node,
    listener: Listener,
    message_max: usize,
    limits: ConnectionLimits,
    stopping: watch::Receiver<bool>,
) -> Result<impl Future<Output = Result<(), tonic::transport::Error>> + use<>, DoorError> {
    let door = Door {
        streams: StreamsService {
            store: Arc::clone(&node.store),
            lifecycle: Arc::clone(&node.lifecycle),
            reads: node.reads.clone(),
            admission: Arc::clone(&node.admission),
            metrics: Arc::clone(&node.metrics),
        },
        groups: Arc::clone(&node.groups),
        message_max,
    };
    door.serve(listener, stopping, limits)
}

/// A certificate chain and its private key, in PEM, checked.
#[derive(Clone)]
pub struct Tls {
    config: ServerTlsConfig,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// TLS with `certificate` (a PEM chain, the server's first) and `key`
    /// (its PEM private key).
    ///
    /// # Errors
    /// A message saying what is wrong with them: not PEM, no certificate,
    /// no key, or a key that rustls cannot use.
    pub fn from_pem(certificate: &[u8], key: &[u8]) -> Result<Tls, String> {
        if !certificate.windows(b"-----BEGIN CERTIFICATE-----".len()).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err("the certificate file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string());
        }
        if !key.windows(b"PRIVATE KEY-----".len()).any(|w| w == b"PRIVATE KEY-----") {
            return Err("the key file holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)".to_string());
        }
        let config = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
        // Building a server checks the pair now rather than at the first
        // connection.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|error| format!("the certificate and key are not usable: {}", error_chain(&error)))?;
        Ok(Tls { config })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The door's socket, and its TLS when it has one.
#[derive(Debug)]
pub struct Listener {
    /// Where KurrentDB clients connect.
    pub listener: TcpListener,
    /// TLS; `None`: plain text (`tls=false` connection strings).
    pub tls: Option<Tls>,
}

/// What the door's services read and write with.
pub struct Door {
    /// The Streams service.
    pub streams: StreamsService,
    /// The consumer groups, for persistent subscriptions.
    pub groups: Arc<Groups>,
    /// Largest message a client may send.
    pub message_max: usize,
}

impl Door {
    /// Serves on `listener` until `stopping` turns true, its connections
    /// held to `limits` (a preface within the header timeout, TCP
    /// keepalive, a cap on open connections; see
    /// [`quipu_grpc::opening`]); messages over `message_max` are
    /// RESOURCE_EXHAUSTED ([`quipu_grpc::message_limit`]).
    ///
    /// # Errors
    /// The listener's address cannot be read, or TLS cannot be set up.
    pub fn serve(
        self,
        listener: Listener,
        stopping: watch::Receiver<bool>,
        limits: ConnectionLimits,
    ) -> Result<impl Future<Output = Result<(), tonic::transport::Error>>, DoorError> {
        let address = listener.listener.local_addr()?;
        let store = Arc::clone(&self.streams.store);
        let shared = Arc::new(self.streams);
        let session = quipu_proto::kurrentdb::protocol::v2::streams::streams_service_server::StreamsServiceServer::new(
            SessionService { streams: Arc::clone(&shared) },
        )
        .max_decoding_message_size(self.message_max);
        let streams =
            streams::streams_server::StreamsServer::from_arc(shared).max_decoding_message_size(self.message_max);
        let persistent = persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer::new(
            PersistentService { groups: self.groups, store },
        )
        .max_decoding_message_size(self.message_max);
        let features = server_features::server_features_server::ServerFeaturesServer::new(FeaturesService)
            .max_decoding_message_size(self.message_max);
        let gossip = gossip::gossip_server::GossipServer::new(GossipService {
            instance: quipu_core::EventId::random(),
            address,
        })
        .max_decoding_message_size(self.message_max);
        // Calls of services the door does not serve answer UNIMPLEMENTED
        // naming the method, not tonic's bare one.
        let routes = tonic::service::Routes::new(streams)
            .add_service(session)
            .add_service(persistent)
            .add_service(features)
            .add_service(gossip);
        let routes = tonic::service::Routes::from(routes.into_axum_router().fallback(unimplemented));
        // Messages over the limit, or beyond the door's bytes in flight,
        // are RESOURCE_EXHAUSTED (tonic's own check says OUT_OF_RANGE).
        let budget = quipu_node::byte_budget::ByteBudget::new(limits.request_bytes_in_flight_max);
        let routes = quipu_grpc::message_limit::limited(routes, self.message_max, budget);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = listener.tls {
            builder = builder.tls_config(tls.config)?;
        }
        let cap = quipu_node::connection_cap::ConnectionCap::new("KurrentDB", limits.connections_max);
        let incoming = quipu_grpc::opening::http2_incoming(
            listener.listener,
            stopping.clone(),
            limits.http_header_timeout,
            limits.keepalive,
            cap,
        );
        // KurrentDB's Node.js client reads through a Rust client that
        // turns Nagle's algorithm on for its connection: it writes a
        // call's headers, then holds the request body until the headers
        // are acknowledged. The server has nothing to answer before it has
        // the body, so Linux delays that acknowledgement, 40 ms each call.
        // Acknowledging at once costs one system call per read and takes
        // those 40 ms away.
        let incoming = futures_util::StreamExt::map(incoming, |accepted| {
            accepted.map(quipu_grpc::opening::Admitted::with_quick_ack)
        });
        let mut stop = stopping;
        let stop = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        Ok(builder.add_routes(routes).serve_with_incoming_shutdown(incoming, stop))
    }
}
