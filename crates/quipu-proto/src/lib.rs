//! # quipu-proto: Quipu's gRPC protocol
//!
//! The messages and services of `proto/quipu/v1/`, generated at build
//! time: `Streams` (`streams.proto`: appends, reads, subscriptions) and
//! `Groups` (`groups.proto`: consumer groups), as [`v1::streams_server`]
//! and [`v1::groups_server`] for the server, [`v1::streams_client`] and
//! [`v1::groups_client`] for clients. The `.proto` file is the contract;
//! its comments say what each call promises.

/// Version 1 of the protocol (`package quipu.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("quipu.v1");
}
