//! The events the benchmarks write: 100-byte JSON documents, as the
//! issue's workloads specify, with fresh ids. The network clients of the
//! `server` workload send the same documents (`data`) in their own shapes.

use quipu_core::{EventType, ProposedEvent};

/// Bytes of every event's data.
pub const EVENT_DATA_BYTES: usize = 100;

/// Type of the events the append workloads write.
pub const EVENT_TYPE: &str = "Deposited";

/// A 100-byte JSON event of type `event_type` carrying `n`, with a fresh
/// random id.
#[must_use]
pub fn event(event_type: &EventType, n: u64) -> ProposedEvent {
    ProposedEvent::new(event_type.clone(), data(n))
}

/// The 100-byte JSON document carrying `n`: `{"n":n,"pad":"xx..."}`.
#[must_use]
pub fn data(n: u64) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let pad = EVENT_DATA_BYTES.saturating_sub(head.len() + 2);
    let mut data = String::with_capacity(EVENT_DATA_BYTES);
    data.push_str(&head);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_100_bytes_of_json() {
        let event_type = EventType::new("Deposited").expect("valid");
        for n in [0, 7, u64::MAX] {
            let e = event(&event_type, n);
            assert_eq!(e.data.len(), EVENT_DATA_BYTES, "n = {n}");
            let parsed: serde_json::Value = serde_json::from_slice(&e.data).expect("valid JSON");
            assert_eq!(parsed["n"], n);
        }
    }
}
