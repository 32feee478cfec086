//! Counters of the server, served at `/metrics` in the Prometheus text
//! format. Counting is a relaxed atomic add on the request path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use quipu_core::{AppendOutcome, Store};

use crate::feed::Live;

/// What the server counted since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    appends_written: AtomicU64,
    appends_already_written: AtomicU64,
    appends_conflicted: AtomicU64,
    appends_failed: AtomicU64,
    events_written: AtomicU64,
    responses: [AtomicU64; 3],
}

impl Metrics {
    /// Counts the outcome of one append.
    pub fn count_append(&self, outcome: &Result<AppendOutcome, quipu_core::Error>) {
        let counter = match outcome {
            Ok(AppendOutcome::Written(result)) => {
                let events = result.last_position.0 - result.first_position.0 + 1;
                self.events_written.fetch_add(events, Ordering::Relaxed);
                &self.appends_written
            }
            Ok(AppendOutcome::AlreadyWritten(_)) => &self.appends_already_written,
            Ok(AppendOutcome::Conflict(_)) => &self.appends_conflicted,
            Err(_) => &self.appends_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one HTTP response by its status class.
    pub fn count_response(&self, status: u16) {
        let class = match status {
            ..400 => 0,
            400..500 => 1,
            _ => 2,
        };
        if let Some(counter) = self.responses.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of the counters, of `store`'s
    /// head and disk use, and of the live feeds of `live`.
    #[must_use]
    pub fn render(&self, store: &Store, live: &Live) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "quipu_appends_total",
            "counter",
            "Appends by outcome (error: refused as invalid, or the store failed).",
            &[
                ("{outcome=\"written\"}", get(&self.appends_written)),
                ("{outcome=\"already_written\"}", get(&self.appends_already_written)),
                ("{outcome=\"conflict\"}", get(&self.appends_conflicted)),
                ("{outcome=\"error\"}", get(&self.appends_failed)),
            ],
        );
        family(
            "quipu_events_written_total",
            "counter",
            "Events written by appends.",
            &[("", get(&self.events_written))],
        );
        let [ok, client, server] = &self.responses;
        family(
            "quipu_http_responses_total",
            "counter",
            "HTTP responses by status class.",
            &[("{class=\"2xx\"}", get(ok)), ("{class=\"4xx\"}", get(client)), ("{class=\"5xx\"}", get(server))],
        );
        let head = store.last_position().map_or(0, |p| p.0 + 1);
        family("quipu_log_events", "gauge", "Events in the log (position of the next one).", &[("", head)]);
        if let Ok((log_bytes, index_bytes)) = store.disk_bytes() {
            family(
                "quipu_disk_bytes",
                "gauge",
                "Bytes on disk.",
                &[("{part=\"log\"}", log_bytes), ("{part=\"index\"}", index_bytes)],
            );
        }
        family(
            "quipu_live_feeds",
            "gauge",
            "Live feeds open (subscriptions of every door, group readers).",
            &[("", live.feeds() as u64)],
        );
        family(
            "quipu_tail_bytes",
            "gauge",
            "Bytes of new events held in memory for live feeds (dropped when none follows).",
            &[("", live.tail_bytes() as u64)],
        );
        out
    }
}
