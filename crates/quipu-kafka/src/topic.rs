//! How the store looks as Kafka topics.
//!
//! | topic | what | partitions |
//! | --- | --- | --- |
//! | `quipu.all` | every event (`$all`) | 1 |
//! | `quipu.type.T` | events of type `T` | 1 |
//! | `C` | events of the streams of category `C` | [`DoorConfig::category_partitions`](crate::DoorConfig) |
//!
//! Kafka allows only `[a-zA-Z0-9._-]` in topic names (at most 249
//! characters). A category or type name is written as itself where it uses
//! only `[a-zA-Z0-9-]`; every other byte of its UTF-8, `.` and `_`
//! included, becomes `_` and two upper-case hex digits (`order:v2` is
//! `order_3Av2`). So `.` only ever appears in the `quipu.` names, and each
//! name stands for one topic.
//!
//! A category topic spreads streams over its partitions as Kafka's default
//! partitioner spreads keys: murmur2 of the stream name (the record key),
//! made positive, modulo the partition count. Each stream stays in one
//! partition, in order.
//!
//! A record's offset is the event's position in `$all`, in every topic:
//! offsets within a partition rise but have gaps (as in a compacted Kafka
//! topic), and one offset means the same event everywhere.

use quipu_core::{EventType, StreamName};
pub use quipu_types::topic::{TOPIC_NAME_BYTES_MAX, check_name, murmur2, partition_of};

/// Name of the topic holding every event.
pub const ALL_TOPIC: &str = "quipu.all";
/// Prefix of the per-event-type topics.
pub const TYPE_PREFIX: &str = "quipu.type.";

/// What a topic name is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name breaks Kafka's rules or this mapping's.
    #[error("invalid topic {name:?}: {reason}")]
    Invalid {
        /// The name (first 64 characters).
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A topic of the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `$all`.
    All,
    /// Events of one type.
    EventType(EventType),
    /// Events of the streams of one category.
    Category(String),
}

impl Topic {
    /// The topic a Kafka topic name stands for.
    ///
    /// # Errors
    /// [`TopicError::Invalid`] for an empty or too long name, a character
    /// Kafka forbids, an escape that is not `_XX` or not canonical, a
    /// `quipu.` name other than those above, or a type or category that
    /// Quipu refuses.
    pub fn parse(name: &str) -> Result<Topic, TopicError> {
        let invalid = |reason: String| TopicError::Invalid { name: name.chars().take(64).collect(), reason };
        check_name(name).map_err(invalid)?;
        if name == ALL_TOPIC {
            return Ok(Topic::All);
        }
        if let Some(escaped) = name.strip_prefix(TYPE_PREFIX) {
            let text = unescape(escaped).map_err(invalid)?;
            let event_type = EventType::new(text).map_err(|e| invalid(e.to_string()))?;
            return Ok(Topic::EventType(event_type));
        }
        if name.contains('.') {
            return Err(invalid(format!(
                "names with '.' are {ALL_TOPIC} and {TYPE_PREFIX}TYPE; a category's '.' is written _2E"
            )));
        }
        let category = unescape(name).map_err(invalid)?;
        let stream = StreamName::new(category.as_str()).map_err(|e| invalid(e.to_string()))?;
        if stream.category() != category {
            return Err(invalid(format!("{category:?} is not a category (a category has no '-')")));
        }
        Ok(Topic::Category(category))
    }

    /// The Kafka name of the topic.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Topic::All => ALL_TOPIC.to_string(),
            Topic::EventType(event_type) => format!("{TYPE_PREFIX}{}", escape(event_type.as_str())),
            Topic::Category(category) => escape(category),
        }
    }
}

/// `text` with every byte outside `[a-zA-Z0-9-]` written `_XX`.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("_{byte:02X}"));
        }
    }
    name
}

/// The text an [`escape`]d name stands for; only the canonical escape of
/// a text is accepted.
fn unescape(name: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'_' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        let byte = hex.filter(|h| h.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let byte = byte
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("'_' starts an escape: _ and two hex digits (0-9, A-F)")?;
        bytes.push(byte);
        rest = tail.get(2..).unwrap_or_default();
    }
    let text = String::from_utf8(bytes).map_err(|_| "the escapes do not make UTF-8".to_string())?;
    if escape(&text) != name {
        return Err(format!("not written as Quipu writes it; {text:?} is {}", escape(&text)));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(Topic::parse("quipu.all"), Ok(Topic::All));
        assert_eq!(Topic::parse("order"), Ok(Topic::Category("order".into())));
        assert_eq!(Topic::parse("order_3Av2"), Ok(Topic::Category("order:v2".into())));
        let placed = EventType::new("Order.Placed").expect("valid");
        assert_eq!(Topic::parse("quipu.type.Order_2EPlaced"), Ok(Topic::EventType(placed.clone())));
        assert_eq!(Topic::EventType(placed).name(), "quipu.type.Order_2EPlaced");
        assert_eq!(Topic::Category("a_b".into()).name(), "a_5Fb");
    }

    #[test]
    fn bad_names_say_why() {
        for (name, says) in [
            ("", "1 to 249"),
            ("order v2", "not allowed"),
            ("order.v2", "_2E"),
            ("quipu.other", "_2E"),
            ("order_3a", "escape"),
            ("order_4", "escape"),
            ("order_61", "not written as Quipu writes it"),
            ("order-42", "not a category"),
            ("quipu.type.", "invalid event type"),
        ] {
            let error = Topic::parse(name).expect_err(name).to_string();
            assert!(error.contains(says), "{name:?}: {error}");
        }
    }

    proptest! {
        #[test]
        fn every_category_and_type_round_trips(text in "[a-zA-Z0-9:_.é]{1,40}") {
            if let Ok(stream) = StreamName::new(text.as_str()) && stream.category() == text {
                let topic = Topic::Category(text.clone());
                prop_assert_eq!(Topic::parse(&topic.name()), Ok(topic));
            }
            if let Ok(event_type) = EventType::new(text.as_str()) {
                let topic = Topic::EventType(event_type);
                let name = topic.name();
                if name.len() <= TOPIC_NAME_BYTES_MAX {
                    prop_assert_eq!(Topic::parse(&name), Ok(topic));
                }
            }
        }
    }
}
