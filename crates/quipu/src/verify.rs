//! `quipu verify --data-dir D`: opens a stopped store (as `quipu serve`
//! would, so a torn tail is cut and the index caught up), then reads every
//! record of the log and checks it, and the index against it, with a
//! progress bar. Prints what it checked and every problem with its file
//! and offset; exits 1 when there is any.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use quipu_core::{Options, Store, Verification, VerifyProgress};

/// Runs `quipu verify`.
///
/// # Errors
/// The store does not open (damage open notices is named there, with file
/// and offset), an I/O error, or problems found.
pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        data_dir.join("quipu.meta").exists(),
        "{} holds no Quipu store (no quipu.meta)",
        data_dir.display()
    );
    let store = Store::open(data_dir, Options::default())
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let found = check(&store)?;
    println!(
        "checked {} segments, {} records, {} events, {:.1} MiB",
        found.segments,
        found.records,
        found.events,
        found.bytes as f64 / (1024.0 * 1024.0)
    );
    for problem in &found.problems {
        println!("problem: {problem}");
    }
    anyhow::ensure!(found.problems.is_empty(), "{} problems found in {}", found.problems.len(), data_dir.display());
    println!("no problems found");
    Ok(())
}

/// Verifies `store`, drawing a progress bar on stderr.
///
/// # Errors
/// I/O errors reading the log or the index.
pub fn check(store: &Store) -> anyhow::Result<Verification> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let found = store.verify(&mut |progress: VerifyProgress| {
        bar.set_length(progress.bytes_total);
        bar.set_position(progress.bytes_done.min(progress.bytes_total));
    });
    bar.finish_and_clear();
    found.context("verifying the store")
}
