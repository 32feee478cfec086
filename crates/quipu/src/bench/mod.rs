//! `quipu bench <workload>`: storage engine benchmarks (placeholder until
//! the bench lands).

/// Arguments of `quipu bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Workload name.
    pub workload: String,
}

/// Runs a workload.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("unknown workload {}", args.workload)
}
