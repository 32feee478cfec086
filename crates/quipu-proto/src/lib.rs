//! # quipu-proto: Quipu's gRPC protocol
//!
//! The messages and services of `proto/quipu/v1/`, generated at build
//! time: `Streams` (`streams.proto`: appends, reads, subscriptions) and
//! `Groups` (`groups.proto`: consumer groups), as [`v1::streams_server`]
//! and [`v1::groups_server`] for the server, [`v1::streams_client`] and
//! [`v1::groups_client`] for clients. The `.proto` file is the contract;
//! its comments say what each call promises. Every service decodes with
//! [`codec::StrictCodec`]: a message that does not decode is
//! `INVALID_ARGUMENT`.

pub mod codec;
pub mod frame;

/// Version 1 of the protocol (`package quipu.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("quipu.v1");
}

/// The KurrentDB (EventStoreDB) client protocol, from `proto/kurrent/`:
/// the packages `event_store.client` (shared types), `.streams`,
/// `.persistent_subscriptions`, `.server_features` and `.gossip`, nested
/// as their names are.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod event_store {
    /// `event_store.client`.
    pub mod client {
        tonic::include_proto!("event_store.client");

        /// `event_store.client.streams`.
        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }

        /// `event_store.client.persistent_subscriptions`.
        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }

        /// `event_store.client.server_features`.
        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }

        /// `event_store.client.gossip`.
        pub mod gossip {
            tonic::include_proto!("event_store.client.gossip");
        }
    }
}

/// The v2 streams service of the KurrentDB client protocol, from
/// `proto/kurrent/v2/`: `kurrentdb.protocol.v2.streams` and its
/// `.errors`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod kurrentdb {
    /// `kurrentdb.protocol`.
    pub mod protocol {
        /// `kurrentdb.protocol.v2`.
        pub mod v2 {
            /// `kurrentdb.protocol.v2.streams`.
            pub mod streams {
                tonic::include_proto!("kurrentdb.protocol.v2.streams");

                /// `kurrentdb.protocol.v2.streams.errors`.
                pub mod errors {
                    tonic::include_proto!("kurrentdb.protocol.v2.streams.errors");
                }
            }
        }
    }
}

/// `google.rpc.Status`, as batch append answers carry it.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod google {
    /// `google.rpc`.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
