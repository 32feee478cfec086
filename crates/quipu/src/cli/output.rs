//! How client commands print: aligned columns for people, or one JSON
//! object per line (`--json`) in the shapes of the HTTP API, for scripts.

use std::io::Write;

use quipu_client::{AppendResult, Event, StreamInfo};
use serde_json::{Value, json};

/// Characters of event data shown in a table before it is cut.
const DATA_CHARS_MAX: usize = 60;

/// The chosen format.
pub struct Output {
    json: bool,
}

impl Output {
    /// Tables, or JSON lines when `json`.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Whether output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The result of an append.
    pub fn appended(&self, stream: &str, result: &AppendResult) -> anyhow::Result<()> {
        let next = result.next_expected_revision();
        if self.json {
            return line(&json!({
                "stream": stream,
                "first_position": result.first_position.0,
                "last_position": result.last_position.0,
                "next_expected_revision": next.map(|revision| revision.0),
                "already_written": result.already_written,
            }));
        }
        let what = if result.already_written { "already written (a repeat)" } else { "written" };
        let next = next.map_or_else(|| "-".to_string(), |n| n.to_string());
        println!(
            "{what}: {stream} positions {}..={}, next expected revision {next}",
            result.first_position, result.last_position
        );
        Ok(())
    }

    /// Events read.
    pub fn events(&self, events: &[Event]) -> anyhow::Result<()> {
        self.header()?;
        for event in events {
            self.event(event)?;
        }
        if !self.json && events.is_empty() {
            println!("(no events)");
        }
        Ok(())
    }

    /// The table's header (nothing in JSON).
    pub fn header(&self) -> anyhow::Result<()> {
        if !self.json {
            println!("{:>10}  {:<24} {:>8}  {:<20} {:<27} DATA", "POSITION", "STREAM", "REVISION", "TYPE", "RECORDED");
        }
        Ok(())
    }

    /// One event.
    pub fn event(&self, event: &Event) -> anyhow::Result<()> {
        if self.json {
            return line(&event_json(event));
        }
        let data = String::from_utf8_lossy(&event.data);
        let data: String = if data.chars().count() > DATA_CHARS_MAX {
            data.chars().take(DATA_CHARS_MAX - 1).chain(['…']).collect()
        } else {
            data.into_owned()
        };
        println!(
            "{:>10}  {:<24} {:>8}  {:<20} {:<27} {data}",
            event.position,
            event.stream,
            event.revision,
            event.event_type,
            timestamp(event.recorded_at_us)
        );
        Ok(())
    }

    /// The switch of a subscription from history to live.
    pub fn caught_up(&self) -> anyhow::Result<()> {
        if self.json {
            return line(&json!({"caught_up": true}));
        }
        println!("-- caught up; live from here --");
        Ok(())
    }

    /// A stream's info.
    pub fn info(&self, info: &StreamInfo) -> anyhow::Result<()> {
        if self.json {
            return line(&json!({
                "stream": info.stream,
                "exists": info.last_revision.is_some(),
                "last_revision": info.last_revision.map(|revision| revision.0),
            }));
        }
        match info.last_revision {
            Some(last) => println!("{}: exists, {} events, last revision {last}", info.stream, last.0 + 1),
            None => println!("{}: does not exist", info.stream),
        }
        Ok(())
    }
}

/// Prints `value` as one JSON line.
pub fn line(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Payload bytes as JSON when they are JSON, else as a string.
fn payload(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn event_json(event: &Event) -> Value {
    json!({
        "id": event.id.to_string(),
        "stream": event.stream,
        "type": event.event_type,
        "data": payload(&event.data),
        "metadata": payload(&event.metadata),
        "tags": event.tags,
        "revision": event.revision.0,
        "position": event.position.0,
        "recorded_at": event.recorded_at_us,
    })
}

/// Microseconds since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn timestamp(us: u64) -> String {
    let (seconds, micros) = (us / 1_000_000, us % 1_000_000);
    let (days, day_seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_date(days);
    let (hour, minute, second) = (day_seconds / 3600, day_seconds % 3600 / 60, day_seconds % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(timestamp(1_795_000_000_123_456), "2026-11-18T11:06:40.123456Z");
    }

    #[test]
    fn payloads_are_json_when_they_parse() {
        assert_eq!(payload(b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(payload(b"not json"), json!("not json"));
        assert_eq!(payload(b""), Value::Null);
    }
}
