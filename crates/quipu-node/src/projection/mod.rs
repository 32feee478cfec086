//! Projections as the server sees them: the runners that report to it,
//! the rebuilds asked of them (with progress), and the categories a
//! blocking rebuild closes to appends.
//!
//! Modules: `registry` ([`Projections`]), `block` ([`Blocks`]). The doors
//! serve it at `/v1/projections` (HTTP) and as `quipu.v1.Projections`
//! (gRPC).

mod block;
mod registry;

pub use block::Blocks;
pub use registry::{
    Assignment, LEASE, PROJECTIONS_STREAM, ProjectionInfo, Projections, RebuildInfo, RebuildReport, RebuildState,
    Report,
};
