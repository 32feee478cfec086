//! # quipu-kurrent: the KurrentDB (EventStoreDB) door
//!
//! The client gRPC protocol of
//! KurrentDB on its own port, so applications using the official clients
//! switch to Quipu by changing their connection string
//! (`kurrentdb://127.0.0.1:2115?tls=false`).
//!
//! Offered: `Streams` (reads and catch-up subscriptions of streams and
//! `$all` with filters, `Append`, `BatchAppend`, `Delete`, `Tombstone`),
//! `PersistentSubscriptions` (over Quipu's consumer groups), the v2
//! `StreamsService.AppendSession` (atomic appends to several streams),
//! `ServerFeatures` and `Gossip` (one node, the leader). What is not
//! offered answers UNIMPLEMENTED with the method's name.

mod answer;
mod batch;
pub mod door;
mod filter;
mod group;
mod metadata;
pub mod persistent;
pub mod session;
pub mod streams;
mod subscription;
pub mod wire;

pub use door::{DoorError, Listener, Tls, serve};

use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::{gossip, server_features};
use tonic::{Request, Response, Status};

/// The protocol version this door follows, as `GetSupportedMethods` says.
pub const SERVER_VERSION: &str = "25.1.0";

/// `ServerFeatures`: what the door offers, in lower case as the clients
/// compare it.
pub struct FeaturesService;

#[tonic::async_trait]
impl server_features::server_features_server::ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<shared::Empty>,
    ) -> Result<Response<server_features::SupportedMethods>, Status> {
        let method = |service: &str, method: &str, features: &[&str]| server_features::SupportedMethod {
            method_name: method.to_string(),
            service_name: service.to_string(),
            features: features.iter().map(|f| (*f).to_string()).collect(),
        };
        let streams = "event_store.client.streams.streams";
        let persistent = "event_store.client.persistent_subscriptions.persistentsubscriptions";
        let methods = vec![
            method(streams, "read", &["position", "events"]),
            method(streams, "append", &[]),
            method(streams, "batchappend", &["deadline_duration"]),
            method(streams, "delete", &[]),
            method(streams, "tombstone", &[]),
            method("event_store.client.gossip.gossip", "read", &[]),
            method("kurrentdb.protocol.v2.streams.streamsservice", "appendsession", &[]),
            method(persistent, "create", &["stream", "all"]),
            method(persistent, "update", &["stream", "all"]),
            method(persistent, "delete", &["stream", "all"]),
            method(persistent, "read", &["stream", "all"]),
            method(persistent, "getinfo", &["stream", "all"]),
            method(persistent, "replayparked", &["stream", "all"]),
            method(persistent, "list", &["stream", "all"]),
            method(persistent, "restartsubsystem", &["stream", "all"]),
            method("event_store.client.server_features.serverfeatures", "getsupportedmethods", &[]),
        ];
        Ok(Response::new(server_features::SupportedMethods {
            methods,
            event_store_server_version: SERVER_VERSION.to_string(),
        }))
    }
}

/// The answer to a call the door does not serve: UNIMPLEMENTED, naming
/// the service and method of its path.
pub async fn unimplemented(uri: axum::http::Uri) -> axum::response::Response {
    let path = uri.path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let service = service.rsplit('.').next().unwrap_or(service);
    Status::unimplemented(format!("{service}.{method} is not offered by Quipu's KurrentDB door (see docs/kurrent.md)"))
        .into_http()
}

/// `Gossip`: one member, the leader, at the door's address.
pub struct GossipService {
    /// This node's id, fixed at start.
    pub instance: quipu_core::EventId,
    /// Where clients reach the door.
    pub address: std::net::SocketAddr,
}

#[tonic::async_trait]
impl gossip::gossip_server::Gossip for GossipService {
    async fn read(&self, _request: Request<shared::Empty>) -> Result<Response<gossip::ClusterInfo>, Status> {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let member = gossip::MemberInfo {
            instance_id: Some(wire::uuid(self.instance, true)),
            time_stamp: now_us.saturating_mul(10),
            state: gossip::member_info::VNodeState::Leader as i32,
            is_alive: true,
            http_end_point: Some(gossip::EndPoint {
                address: self.address.ip().to_string(),
                port: u32::from(self.address.port()),
            }),
        };
        Ok(Response::new(gossip::ClusterInfo { members: vec![member] }))
    }
}
