//! The schema registry: versioned JSON Schemas per event type (the
//! subject), checked for compatibility when registered, served over our
//! gRPC API and over the subset of the Confluent Schema Registry REST API
//! that Kafka tooling uses.
//!
//! Modules: `compatibility` (the checker and the modes), `registry`
//! ([`Schemas`], kept in `$schemas`), `confluent` (the REST routes at
//! `/subjects`, `/schemas/ids`, `/compatibility`, `/config`), `grpc`
//! (`quipu.v1.Schemas`).

pub mod compatibility;
pub mod confluent;
pub mod grpc;
pub mod http;
pub mod registry;

pub use compatibility::Mode;
pub use registry::{SchemaError, SchemaVersion, Schemas, Scope};
