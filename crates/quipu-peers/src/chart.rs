//! The chart linked from the README: for each throughput workload, one bar
//! per peer, as an SVG. Placeholder until the plotting lands.

use std::path::Path;

use crate::report::Row;

/// Draws the chart into `path`.
///
/// # Errors
/// Writing the file.
pub fn draw(_rows: &[Row], _peers: &[String], _path: &Path) -> anyhow::Result<()> {
    Ok(())
}
