//! [`EventId`]: the client-chosen id of an event, the key of
//! idempotency, the same 16 bytes in the log, the services, every door
//! and the client.

use std::fmt;

/// Text that should be an event id (a UUID) is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {text:?}: {reason}")]
pub struct EventIdError {
    /// The text (first 64 characters).
    pub text: String,
    /// What the parser said.
    pub reason: String,
}

/// Length of a UUID's hyphenated text.
const HYPHENATED_LEN: usize = 36;

/// Client-chosen unique id of an event; re-sending an append with the same
/// ids is a no-op (idempotency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    /// A fresh random (v4) id.
    #[must_use]
    pub fn random() -> EventId {
        EventId(uuid::Uuid::new_v4())
    }

    /// Parses the hyphenated UUID form, `8-4-4-4-12` hex digits in either
    /// case (what every client writes); braced, `urn:uuid:` and unhyphenated
    /// spellings, and the nil UUID, are refused: one id has one spelling,
    /// and the nil UUID is nobody's own id.
    ///
    /// # Errors
    /// [`EventIdError`] saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<EventId, EventIdError> {
        let invalid = |reason: String| EventIdError { text: text.chars().take(64).collect(), reason };
        if text.len() != HYPHENATED_LEN {
            return Err(invalid(
                "write a UUID as 8-4-4-4-12 hex digits, e.g. 6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01".into(),
            ));
        }
        let id = uuid::Uuid::parse_str(text).map_err(|e| invalid(e.to_string()))?;
        if id.is_nil() {
            return Err(invalid("the nil UUID is not an event id; give each event an id of its own".into()));
        }
        Ok(EventId(id))
    }

    /// The hyphenated lower-case text form (what `Display` writes),
    /// without the formatting machinery: readers send one per event.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = uuid::Uuid::encode_buffer();
        self.0.hyphenated().encode_lower(&mut text).to_owned()
    }

    /// The 16 bytes of the UUID, as stored in the log.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl std::str::FromStr for EventId {
    type Err = EventIdError;

    /// As [`EventId::parse`].
    fn from_str(text: &str) -> Result<EventId, EventIdError> {
        EventId::parse(text)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_as_text_is_what_display_writes_and_parses_back() {
        for _ in 0..100 {
            let id = EventId::random();
            assert_eq!(id.to_text(), id.to_string());
            assert_eq!(EventId::parse(&id.to_text()), Ok(id));
        }
        let refused = EventId::parse("not-a-uuid").err().map(|e| e.to_string());
        assert!(refused.is_some_and(|m| m.starts_with("invalid event id \"not-a-uuid\": ")));
    }

    #[test]
    fn one_id_has_one_spelling_and_the_nil_uuid_is_nobodys() {
        let id = "6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01";
        let upper = EventId::parse(&id.to_uppercase()).expect("either case");
        assert_eq!(upper.to_text(), id, "kept in lower case");
        for other in [
            "{6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01}",
            "urn:uuid:6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a01",
            "6f1c9b7e2f444b8e9a530d2f1d3c4a01",
        ] {
            let refused = EventId::parse(other).expect_err(other);
            assert!(refused.reason.contains("8-4-4-4-12"), "{other}: {refused}");
        }
        let nil = EventId::parse("00000000-0000-0000-0000-000000000000").expect_err("nil");
        assert!(nil.reason.contains("nil UUID"), "{nil}");
        assert!(EventId::parse("6f1c9b7e-2f44-4b8e-9a53-0d2f1d3c4a0g").is_err(), "not hex");
    }
}
