//! The events every system stores: 100-byte JSON documents, the same bytes
//! for every peer.

/// Bytes of each event's data.
pub const EVENT_BYTES: usize = 100;

/// The `n`-th payload: `{"n":<n>,"pad":"xxx..."}`, padded to exactly
/// [`EVENT_BYTES`].
#[must_use]
pub fn payload(n: u64) -> Vec<u8> {
    let head = format!("{{\"n\":{},\"pad\":\"", n % 1_000_000_000_000);
    let pad = EVENT_BYTES - head.len() - 2;
    let mut bytes = head.into_bytes();
    bytes.resize(bytes.len() + pad, b'x');
    bytes.extend_from_slice(b"\"}");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_100_bytes_of_json() {
        for n in [0, 7, 123_456_789, u64::MAX] {
            let bytes = payload(n);
            assert_eq!(bytes.len(), EVENT_BYTES);
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(value["n"].as_u64(), Some(n % 1_000_000_000_000));
        }
    }
}
