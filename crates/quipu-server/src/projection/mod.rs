//! Projections as the server sees them: the runners that report to it,
//! the rebuilds asked of them (with progress), and the categories a
//! blocking rebuild closes to appends.
//!
//! Modules: `registry` ([`Projections`]), `block` ([`Blocks`]), `http`
//! (`/v1/projections`) and `grpc` (`quipu.v1.Projections`).

mod block;
pub mod grpc;
pub mod http;
mod registry;

pub use block::Blocks;
pub use registry::{
    Assignment, LEASE, PROJECTIONS_STREAM, ProjectionInfo, Projections, RebuildInfo, RebuildReport, RebuildState,
    Report,
};
