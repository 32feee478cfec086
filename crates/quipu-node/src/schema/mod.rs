//! The schema registry: versioned JSON Schemas per event type (the
//! subject), checked for compatibility when registered, served over our
//! gRPC API and over the subset of the Confluent Schema Registry REST API
//! that Kafka tooling uses.
//!
//! Modules: `compatibility` (the checker and the modes), `registry`
//! ([`Schemas`], kept in `$schemas`). The doors serve it as
//! `quipu.v1.Schemas` (gRPC), at `/v1/schemas` and Confluent's routes
//! (`/subjects`, `/schemas/ids`, `/compatibility`, `/config`) over HTTP.

pub mod compatibility;
pub mod registry;

pub use compatibility::Mode;
pub use registry::{SchemaError, SchemaVersion, Schemas, Scope};
