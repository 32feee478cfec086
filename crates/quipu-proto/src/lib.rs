//! # quipu-proto: Quipu's gRPC protocol
//!
//! The messages and the `Streams` service of `proto/quipu/v1/streams.proto`,
//! generated at build time: [`v1::streams_server`] for the server,
//! [`v1::streams_client`] for clients. The `.proto` file is the contract;
//! its comments say what each call promises.

/// Version 1 of the protocol (`package quipu.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("quipu.v1");
}
