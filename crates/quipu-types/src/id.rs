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

    /// Parses the textual UUID form.
    ///
    /// # Errors
    /// [`EventIdError`] when `text` is not a UUID.
    pub fn parse(text: &str) -> Result<EventId, EventIdError> {
        uuid::Uuid::parse_str(text)
            .map(EventId)
            .map_err(|e| EventIdError { text: text.chars().take(64).collect(), reason: e.to_string() })
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
}
