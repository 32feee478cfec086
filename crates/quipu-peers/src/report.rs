//! Results: one [`Row`] per peer and workload, printed as it comes (a
//! line of text, or JSON with `--json`), then a Markdown table of every
//! cell with the ratio Quipu/peer, ready for `docs/benchmarks.md`.

use serde::Serialize;

use crate::workload::Outcome;

/// One measured (or skipped) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The system.
    pub peer: String,
    /// The workload and its parameter, e.g. `append x16`.
    pub workload: String,
    /// The headline figure (events/s, or bytes per event for `disk`).
    pub value: Option<f64>,
    /// Its unit.
    pub unit: &'static str,
    /// Whether more is better for `value`.
    pub higher_is_better: bool,
    /// Latency per operation, µs: p50, p99, p99.9.
    pub latency_us: Option<[u64; 3]>,
    /// Why there is no value, or a caveat.
    pub note: Option<String>,
}

impl Row {
    /// A throughput row from an outcome.
    #[must_use]
    pub fn throughput(peer: &str, workload: String, outcome: &Outcome) -> Row {
        let latency = &outcome.latency;
        let latency_us = (!latency.is_empty()).then(|| {
            [latency.value_at_quantile(0.5), latency.value_at_quantile(0.99), latency.value_at_quantile(0.999)]
        });
        Row {
            peer: peer.to_string(),
            workload,
            value: Some(outcome.events_per_s().round()),
            unit: "events/s",
            higher_is_better: true,
            latency_us,
            note: None,
        }
    }

    /// A row that could not be measured, with the reason.
    #[must_use]
    pub fn skipped(peer: &str, workload: String, unit: &'static str, reason: impl Into<String>) -> Row {
        Row {
            peer: peer.to_string(),
            workload,
            value: None,
            unit,
            higher_is_better: true,
            latency_us: None,
            note: Some(reason.into()),
        }
    }

    /// Prints the row as it is measured.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
            return;
        }
        let value = self.value.map_or_else(
            || "-".to_string(),
            |v| if v >= 100.0 { format!("{v:.0} {}", self.unit) } else { format!("{v:.1} {}", self.unit) },
        );
        let latency = self
            .latency_us
            .map_or_else(String::new, |[p50, p99, p999]| format!("  p50 {p50} us  p99 {p99} us  p99.9 {p999} us"));
        let note = self.note.as_deref().map_or_else(String::new, |n| format!("  ({n})"));
        println!("{:<10} {:<14} {value:>22}{latency}{note}", self.peer, self.workload);
    }
}

/// The Markdown table: one row per workload, one column per peer with
/// its figure and the ratio Quipu/peer (above 1: Quipu does better, for
/// throughput and for bytes per event alike).
#[must_use]
pub fn table(rows: &[Row], peers: &[String]) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    for row in rows {
        if !workloads.contains(&row.workload.as_str()) {
            workloads.push(&row.workload);
        }
    }
    let mut out = format!("| workload | {} |\n|---|{}\n", peers.join(" | "), "---|".repeat(peers.len()));
    for workload in workloads {
        let find = |peer: &str| rows.iter().find(|r| r.peer == peer && r.workload == workload);
        let quipu = find("quipu").and_then(|r| r.value);
        let cells: Vec<String> = peers
            .iter()
            .map(|peer| match find(peer) {
                None => "-".to_string(),
                Some(row) => cell(row, quipu),
            })
            .collect();
        let unit = rows.iter().find(|r| r.workload == workload).map_or("", |r| r.unit);
        out.push_str(&format!("| {workload} ({unit}) | {} |\n", cells.join(" | ")));
    }
    out
}

fn cell(row: &Row, quipu: Option<f64>) -> String {
    let Some(value) = row.value else {
        return format!("n/a: {}", row.note.as_deref().unwrap_or("not measured"));
    };
    let figure = if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.1}") };
    let p99 = row.latency_us.map_or_else(String::new, |[_, p99, _]| format!(", p99 {}", micros(p99)));
    let ratio = match (row.peer.as_str(), quipu) {
        ("quipu", _) | (_, None) => String::new(),
        (_, Some(quipu)) if value > 0.0 => {
            let ratio = if row.higher_is_better { quipu / value } else { value / quipu };
            format!(" (**{ratio:.2}x**)")
        }
        _ => String::new(),
    };
    let note = row.note.as_deref().map_or_else(String::new, |n| format!(" [{n}]"));
    format!("{figure}{p99}{ratio}{note}")
}

fn micros(us: u64) -> String {
    if us >= 10_000 { format!("{:.0} ms", us as f64 / 1000.0) } else { format!("{us} µs") }
}
