//! Events and the names they carry: [`EventId`], [`StreamName`],
//! [`EventType`], [`Tag`], the [`ProposedEvent`] a client appends and the
//! [`RecordedEvent`] a read returns.
//!
//! Names are validated when they are constructed, so a value of these
//! types that exists is valid and inner code never re-checks it.

use std::fmt;

use crate::error::Error;
use crate::position::{Position, Revision};

/// Longest stream name, in bytes of UTF-8.
pub const STREAM_NAME_BYTES_MAX: usize = 256;
/// Longest event type or tag, in bytes of UTF-8.
pub const LABEL_BYTES_MAX: usize = 128;
/// Most tags one event may carry.
pub const EVENT_TAGS_MAX: usize = 32;

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
    /// [`Error::InvalidEventId`] when `text` is not a UUID.
    pub fn parse(text: &str) -> Result<EventId, Error> {
        uuid::Uuid::parse_str(text)
            .map(EventId)
            .map_err(|e| Error::InvalidEventId { text: text.chars().take(64).collect(), reason: e.to_string() })
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

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of name is checked; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A [`StreamName`].
    Stream,
    /// An [`EventType`].
    EventType,
    /// A [`Tag`].
    Tag,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Stream => "stream name",
            NameKind::EventType => "event type",
            NameKind::Tag => "tag",
        })
    }
}

/// Checks the rules shared by all names: not empty, at most `bytes_max`
/// bytes, no control characters (the index uses NUL as a separator), no
/// leading or trailing whitespace.
fn check_name(kind: NameKind, text: &str, bytes_max: usize) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidName { kind, name: text.chars().take(64).collect(), reason };
    if text.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if text.len() > bytes_max {
        return Err(invalid(format!("is {} bytes long, at most {bytes_max} are allowed", text.len())));
    }
    // Printable ASCII without a space at either end, the common case, is
    // checked byte by byte; anything else by characters.
    let bytes = text.as_bytes();
    let printable = |b: &u8| (b' '..=b'~').contains(b);
    if bytes.iter().all(printable) && bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ') {
        return Ok(());
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(invalid(format!("contains the control character {:?}", c)));
    }
    if text.trim() != text {
        return Err(invalid("must not start or end with whitespace".into()));
    }
    Ok(())
}

/// Name of a stream, e.g. `order-42`.
///
/// Rules: 1 to [`STREAM_NAME_BYTES_MAX`] bytes of UTF-8, no control
/// characters, no leading or trailing whitespace, and no leading `$`
/// (reserved for system streams).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// Validates and wraps a stream name.
    ///
    /// # Errors
    /// [`Error::InvalidName`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<StreamName, Error> {
        let name = name.into();
        check_name(NameKind::Stream, &name, STREAM_NAME_BYTES_MAX)?;
        if name.starts_with('$') {
            return Err(Error::InvalidName {
                kind: NameKind::Stream,
                name: name.chars().take(64).collect(),
                reason: "names starting with '$' are reserved for system streams".into(),
            });
        }
        Ok(StreamName(name))
    }

    /// Validates and wraps the name of a system stream, which starts with
    /// `$` and is written only by Quipu itself (consumer-group checkpoints,
    /// parked events); clients cannot name one in an append.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when `name` breaks a rule of stream names or
    /// does not start with `$`.
    pub fn system(name: impl Into<String>) -> Result<StreamName, Error> {
        let name = name.into();
        check_name(NameKind::Stream, &name, STREAM_NAME_BYTES_MAX)?;
        if !name.starts_with('$') {
            return Err(Error::InvalidName {
                kind: NameKind::Stream,
                name: name.chars().take(64).collect(),
                reason: "system stream names start with '$'".into(),
            });
        }
        Ok(StreamName(name))
    }

    /// Validates the name of a stream to read (or read back from the log):
    /// any stream name, system streams (`$...`) included, since reading
    /// them is how their records (parked events, checkpoints) are
    /// inspected.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when `name` breaks a rule of stream names.
    pub fn readable(name: impl Into<String>) -> Result<StreamName, Error> {
        let name = name.into();
        check_name(NameKind::Stream, &name, STREAM_NAME_BYTES_MAX)?;
        Ok(StreamName(name))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as text, taken out without a copy.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// The category: the part before the first `-`, or the whole name when
    /// it has none (`order-42` -> `order`, `inventory` -> `inventory`).
    #[must_use]
    pub fn category(&self) -> &str {
        match self.0.split_once('-') {
            Some((category, _)) if !category.is_empty() => category,
            _ => &self.0,
        }
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Type of an event, e.g. `OrderPlaced`: 1 to [`LABEL_BYTES_MAX`] bytes,
/// no control characters, no leading or trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(String);

impl EventType {
    /// Validates and wraps an event type.
    ///
    /// # Errors
    /// [`Error::InvalidName`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<EventType, Error> {
        let name = name.into();
        check_name(NameKind::EventType, &name, LABEL_BYTES_MAX)?;
        Ok(EventType(name))
    }

    /// The type as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The type as text, taken out without a copy.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag on an event, e.g. `customer:7`, used by tag reads and DCB
/// conditions: same rules as [`EventType`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// Validates and wraps a tag.
    ///
    /// # Errors
    /// [`Error::InvalidName`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<Tag, Error> {
        let name = name.into();
        check_name(NameKind::Tag, &name, LABEL_BYTES_MAX)?;
        Ok(Tag(name))
    }

    /// The tag as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as text, taken out without a copy.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event as a client proposes it, before it has a place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedEvent {
    /// Unique id, chosen by the client; the key of idempotency.
    pub id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// Payload, usually JSON.
    pub data: Vec<u8>,
    /// Metadata, usually JSON.
    pub metadata: Vec<u8>,
    /// Tags, at most [`EVENT_TAGS_MAX`], no duplicates.
    pub tags: Vec<Tag>,
}

impl ProposedEvent {
    /// An event with a random id, the given type and data, no metadata and
    /// no tags.
    #[must_use]
    pub fn new(event_type: EventType, data: impl Into<Vec<u8>>) -> ProposedEvent {
        ProposedEvent { id: EventId::random(), event_type, data: data.into(), metadata: Vec::new(), tags: Vec::new() }
    }

    /// Bytes this event counts against the event and append size limits:
    /// data, metadata, type, tags and the fixed-size id.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        16 + self.event_type.as_str().len()
            + self.data.len()
            + self.metadata.len()
            + self.tags.iter().map(|t| t.as_str().len()).sum::<usize>()
    }
}

/// An event as stored: the proposed event plus its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The client-chosen id.
    pub id: EventId,
    /// Stream the event belongs to.
    pub stream: StreamName,
    /// Index of the event in its stream.
    pub revision: Revision,
    /// Place of the event in the global log.
    pub position: Position,
    /// The event's type.
    pub event_type: EventType,
    /// Payload.
    pub data: Vec<u8>,
    /// Metadata.
    pub metadata: Vec<u8>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// When the append that wrote it was committed, in microseconds since
    /// the Unix epoch; never decreases along the log.
    pub recorded_at_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The byte-wise check of printable ASCII agrees with the rules
        /// as written: no control character, no whitespace at either end.
        #[test]
        fn a_name_is_valid_exactly_when_the_rules_say(text in "[ -~\t\u{80}-\u{10ffff}]{1,12}|[ a-z]{1,6}") {
            let by_rules = !text.chars().any(char::is_control) && text.trim() == text;
            prop_assert_eq!(check_name(NameKind::Stream, &text, 100).is_ok(), by_rules, "{:?}", text);
        }
    }

    #[test]
    fn an_id_as_text_is_what_display_writes_and_parses_back() {
        for _ in 0..100 {
            let id = EventId::random();
            assert_eq!(id.to_text(), id.to_string());
            assert_eq!(EventId::parse(&id.to_text()).expect("parses"), id);
        }
    }

    #[test]
    fn stream_names_are_validated() {
        assert!(StreamName::new("order-42").is_ok());
        assert!(StreamName::new("").is_err());
        assert!(StreamName::new("$all").is_err());
        assert!(StreamName::system("$parked-billing").is_ok());
        assert!(StreamName::system("parked-billing").is_err());
        assert!(StreamName::system("$bad\tname").is_err());
        assert!(StreamName::readable("$parked-billing").is_ok());
        assert!(StreamName::readable("").is_err());
        assert!(StreamName::new("a\0b").is_err());
        assert!(StreamName::new(" order").is_err());
        assert!(StreamName::new("x".repeat(STREAM_NAME_BYTES_MAX)).is_ok());
        assert!(StreamName::new("x".repeat(STREAM_NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn category_is_prefix_before_first_dash() {
        let category = |s: &str| StreamName::new(s).map(|n| n.category().to_owned()).ok();
        assert_eq!(category("order-42").as_deref(), Some("order"));
        assert_eq!(category("order-42-x").as_deref(), Some("order"));
        assert_eq!(category("inventory").as_deref(), Some("inventory"));
        assert_eq!(category("-odd").as_deref(), Some("-odd"));
    }

    #[test]
    fn error_names_the_broken_rule() {
        let message = StreamName::new("a\tb").map(|_| ()).err().map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("invalid stream name \"a\\tb\": contains the control character '\\t'"));
        assert!(EventId::parse("not-a-uuid").is_err());
    }
}
