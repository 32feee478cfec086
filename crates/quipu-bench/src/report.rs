//! One benchmark result and how it prints: a table row for people, a JSON
//! object per line for scripts (`workload`, `events`, `seconds`,
//! `events_per_s`, `mb_per_s`, `p50_us`, `p99_us`, `p999_us`, `rss_bytes`,
//! plus workload-specific fields such as `writers` or `ratio_to_disk`).

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::memory;

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
///
/// # Panics
/// Never: the bounds are valid constants.
#[must_use]
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// One result line.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Workload name, e.g. `append`.
    pub workload: String,
    /// Events processed.
    pub events: u64,
    /// Bytes moved (log bytes written, or read), for MB/s.
    pub bytes: u64,
    /// Wall time of the measured part.
    pub seconds: f64,
    /// Per-operation latency, when measured.
    pub latency: Option<Histogram<u64>>,
    /// Resident memory of the bench process when the result was made.
    pub rss_bytes: u64,
    /// Workload-specific fields (writers, ratios, memory...).
    pub extra: Map<String, Value>,
}

impl Measurement {
    /// A result of `events` and `bytes` in `seconds`.
    #[must_use]
    pub fn new(workload: &str, events: u64, bytes: u64, seconds: f64) -> Measurement {
        Measurement {
            workload: workload.to_string(),
            events,
            bytes,
            seconds,
            latency: None,
            rss_bytes: memory::rss_bytes(),
            extra: Map::new(),
        }
    }

    /// Adds the per-operation latency histogram.
    #[must_use]
    pub fn with_latency(mut self, latency: Histogram<u64>) -> Measurement {
        self.latency = Some(latency);
        self
    }

    /// Adds `ratio_to_disk` (`value / limit`) and `disk_basis` naming the
    /// disk limit it is a share of; nothing when the limit is unknown.
    #[must_use]
    pub fn with_ratio_to_disk(self, value: f64, limit: Option<f64>, basis: &str) -> Measurement {
        match limit.filter(|l| *l > 0.0) {
            Some(limit) => self.with("ratio_to_disk", round3(value / limit)).with("disk_basis", basis),
            None => self,
        }
    }

    /// Adds `ratio_to_embedded` (this result's events/s over
    /// `embedded_events_per_s`, the same work done in-process) and
    /// `embedded_events_per_s`; only the latter when that is 0.
    #[must_use]
    pub fn with_ratio_to_embedded(self, embedded_events_per_s: f64) -> Measurement {
        let events_per_s = self.events_per_s();
        let measurement = self.with("embedded_events_per_s", embedded_events_per_s.round());
        if embedded_events_per_s > 0.0 {
            measurement.with("ratio_to_embedded", round3(events_per_s / embedded_events_per_s))
        } else {
            measurement
        }
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Measurement {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Events per second.
    #[must_use]
    pub fn events_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.events as f64 / self.seconds } else { 0.0 }
    }

    /// Megabytes (10^6 bytes) per second.
    #[must_use]
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.bytes as f64 / 1e6 / self.seconds } else { 0.0 }
    }

    fn percentile(&self, q: f64) -> Option<u64> {
        self.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q))
    }

    /// The JSON object of this result.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("workload".into(), json!(self.workload));
        object.insert("events".into(), json!(self.events));
        object.insert("seconds".into(), json!(round3(self.seconds)));
        object.insert("events_per_s".into(), json!(self.events_per_s().round()));
        object.insert("mb_per_s".into(), json!(round3(self.mb_per_s())));
        for (key, q) in [("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)] {
            object.insert(key.into(), self.percentile(q).map_or(Value::Null, |v| json!(v)));
        }
        object.insert("rss_bytes".into(), json!(self.rss_bytes));
        object.extend(self.extra.clone());
        Value::Object(object)
    }

    /// Prints the result as a JSON line or a table row.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
            return;
        }
        let mut line =
            format!("{:<24} {:>10.0} events/s {:>9.1} MB/s", self.workload, self.events_per_s(), self.mb_per_s());
        if let (Some(p50), Some(p99), Some(p999)) =
            (self.percentile(0.5), self.percentile(0.99), self.percentile(0.999))
        {
            line.push_str(&format!("  p50 {p50} us  p99 {p99} us  p99.9 {p999} us"));
        }
        line.push_str(&format!("  rss {} MB", self.rss_bytes / 1_000_000));
        for (key, value) in &self.extra {
            line.push_str(&format!("  {key}={value}"));
        }
        println!("{line}");
    }
}

/// `value` rounded to three decimals.
#[must_use]
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_the_named_fields() {
        let mut latency = latency_histogram();
        for v in 1..=1000 {
            latency.record(v).expect("in range");
        }
        let m = Measurement::new("append", 2000, 4_000_000, 2.0)
            .with("writers", 8)
            .with_latency(latency)
            .with_ratio_to_disk(500.0, Some(1000.0), "fdatasync_per_s");
        let v = m.to_json();
        assert_eq!(v["workload"], "append");
        assert_eq!(v["events_per_s"], 1000.0);
        assert_eq!(v["mb_per_s"], 2.0);
        assert_eq!(v["p50_us"], 500);
        assert_eq!(v["p999_us"], 999);
        assert_eq!(v["writers"], 8);
        assert_eq!(v["ratio_to_disk"], 0.5);
        assert_eq!(v["disk_basis"], "fdatasync_per_s");
        assert!(Measurement::new("scan", 0, 0, 0.0).to_json()["p99_us"].is_null());
        let served = Measurement::new("server_append_grpc", 500, 0, 1.0).with_ratio_to_embedded(1000.0);
        assert_eq!(served.to_json()["ratio_to_embedded"], 0.5);
        assert_eq!(served.to_json()["embedded_events_per_s"], 1000.0);
    }
}
