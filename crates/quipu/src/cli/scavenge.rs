//! `quipu scavenge`: starts the server's online scavenge (which removes
//! from the log every event stream metadata hides) and follows it with a
//! progress bar; `--status` shows the running or last one, `--stop` stops
//! it after the segment in hand.

use std::time::Duration;

use quipu_client::{Client, ScavengeState, ScavengeStatus};
use serde_json::{Value, json};

use super::output::{Output, line};

/// How often the progress is asked for.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// `quipu scavenge`.
#[derive(clap::Args, Debug)]
pub struct ScavengeArgs {
    /// Start it and return at once.
    #[arg(long, conflicts_with_all = ["status", "stop"])]
    pub detach: bool,
    /// Show the running or last scavenge instead of starting one.
    #[arg(long, conflicts_with = "stop")]
    pub status: bool,
    /// Stop the running scavenge after the segment in hand.
    #[arg(long)]
    pub stop: bool,
}

/// Runs `quipu scavenge`.
///
/// # Errors
/// The server cannot be reached or refuses (one already runs, none to
/// stop); the scavenge failed.
pub async fn run(client: &Client, output: &Output, args: ScavengeArgs) -> anyhow::Result<()> {
    if args.status || args.stop {
        let status = if args.stop { client.stop_scavenge().await? } else { client.scavenge_status().await? };
        if output.is_json() {
            return line(&status_json(&status));
        }
        let what = if args.stop { "stopping after the segment in hand; " } else { "" };
        println!("{what}{}", summary(&status));
        return Ok(());
    }
    let started = client.start_scavenge().await?;
    if output.is_json() {
        line(&status_json(&started))?;
    } else if args.detach {
        println!("scavenge started; `quipu scavenge --status` follows it");
    } else {
        println!("scavenge started (Ctrl-C stops watching; `quipu scavenge --stop` stops the scavenge)");
    }
    if args.detach {
        return Ok(());
    }
    let bar = progress_bar(output);
    let last = loop {
        tokio::time::sleep(POLL_EVERY).await;
        let status = client.scavenge_status().await?;
        anyhow::ensure!(status.started_at_us == started.started_at_us, "another scavenge replaced this one");
        if output.is_json() {
            line(&status_json(&status))?;
        }
        bar.set_length(status.bytes_total);
        bar.set_position(status.bytes_scanned.min(status.bytes_total));
        bar.set_message(format!(
            "segment {}/{}, {} events removed, {:.1} MiB freed, {:.1} MiB/s",
            status.segments_done,
            status.segments_total,
            status.events_removed,
            mib(status.bytes_reclaimed),
            mib(status.bytes_per_second as u64),
        ));
        if status.state != ScavengeState::Running {
            break status;
        }
    };
    bar.finish_and_clear();
    if !output.is_json() {
        println!("{}", summary(&last));
    }
    match last.state {
        ScavengeState::Failed => anyhow::bail!("scavenge failed: {}", last.message),
        _ => Ok(()),
    }
}

/// The bar: hidden for JSON output and when stderr is not a terminal.
fn progress_bar(output: &Output) -> indicatif::ProgressBar {
    if output.is_json() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes}  {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn state_name(state: ScavengeState) -> &'static str {
    match state {
        ScavengeState::Running => "running",
        ScavengeState::Done => "done",
        ScavengeState::Stopped => "stopped",
        ScavengeState::Failed => "failed",
    }
}

/// One line for people.
fn summary(status: &ScavengeStatus) -> String {
    let seconds =
        status.finished_at_us.unwrap_or(status.started_at_us).saturating_sub(status.started_at_us) as f64 / 1_000_000.0;
    let took = if status.finished_at_us.is_some() { format!(" in {seconds:.1} s") } else { String::new() };
    format!(
        "scavenge {}{took}: {} of {} segments done ({} rewritten), {} events removed, {:.1} MiB freed of {:.1} MiB read \
         ({:.1} MiB/s){}",
        state_name(status.state),
        status.segments_done,
        status.segments_total,
        status.segments_rewritten,
        status.events_removed,
        mib(status.bytes_reclaimed),
        mib(status.bytes_scanned),
        mib(status.bytes_per_second as u64),
        if status.message.is_empty() { String::new() } else { format!(": {}", status.message) },
    )
}

/// A status in the shape of `GET /v1/scavenge`.
fn status_json(status: &ScavengeStatus) -> Value {
    json!({
        "started_at_us": status.started_at_us,
        "finished_at_us": status.finished_at_us,
        "state": state_name(status.state),
        "streams": status.streams,
        "segments_total": status.segments_total,
        "segments_done": status.segments_done,
        "segments_rewritten": status.segments_rewritten,
        "bytes_total": status.bytes_total,
        "bytes_scanned": status.bytes_scanned,
        "bytes_reclaimed": status.bytes_reclaimed,
        "events_removed": status.events_removed,
        "bytes_per_second": status.bytes_per_second,
        "message": status.message,
    })
}
