//! The names events carry: [`StreamName`], [`EventType`] and [`Tag`],
//! with their rules, checked once where a name is made, so a value of
//! these types that exists is valid and no inner code re-checks it. The
//! engine, the services, every door and the client share them.

use std::fmt;

/// Longest stream name, in bytes of UTF-8.
pub const STREAM_NAME_BYTES_MAX: usize = 256;
/// Longest event type or tag, in bytes of UTF-8.
pub const LABEL_BYTES_MAX: usize = 128;
/// Most tags one event may carry.
pub const EVENT_TAGS_MAX: usize = 32;

/// A name breaks a rule; says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {reason}")]
pub struct NameError {
    /// Which kind of name.
    pub kind: NameKind,
    /// The name (first 64 characters).
    pub name: String,
    /// The rule it breaks.
    pub reason: String,
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
fn check_name(kind: NameKind, text: &str, bytes_max: usize) -> Result<(), NameError> {
    let invalid = |reason: String| NameError { kind, name: text.chars().take(64).collect(), reason };
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
/// characters, no leading or trailing whitespace, no leading `$`
/// (reserved for system streams), and not `.` or `..` (which URLs
/// resolve away).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// Validates and wraps a stream name.
    ///
    /// # Errors
    /// [`NameError`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<StreamName, NameError> {
        let name = name.into();
        check_name(NameKind::Stream, &name, STREAM_NAME_BYTES_MAX)?;
        if name.starts_with('$') {
            return Err(NameError {
                kind: NameKind::Stream,
                name: name.chars().take(64).collect(),
                reason: "names starting with '$' are reserved for system streams".into(),
            });
        }
        if name == "." || name == ".." {
            return Err(NameError {
                kind: NameKind::Stream,
                name,
                reason: "'.' and '..' are path segments, which URLs resolve away; choose another name".into(),
            });
        }
        Ok(StreamName(name))
    }

    /// Validates and wraps the name of a system stream, which starts with
    /// `$` and is written only by Quipu itself (consumer-group checkpoints,
    /// parked events); clients cannot name one in an append.
    ///
    /// # Errors
    /// [`NameError`] when `name` breaks a rule of stream names or
    /// does not start with `$`.
    pub fn system(name: impl Into<String>) -> Result<StreamName, NameError> {
        let name = name.into();
        check_name(NameKind::Stream, &name, STREAM_NAME_BYTES_MAX)?;
        if !name.starts_with('$') {
            return Err(NameError {
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
    /// [`NameError`] when `name` breaks a rule of stream names.
    pub fn readable(name: impl Into<String>) -> Result<StreamName, NameError> {
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
    /// [`NameError`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<EventType, NameError> {
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
    /// [`NameError`] saying which rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<Tag, NameError> {
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
        for dots in [".", ".."] {
            let refused = StreamName::new(dots).expect_err(dots);
            assert!(refused.reason.contains("path segments"), "{refused}");
        }
        assert!(StreamName::new("...").is_ok(), "only the two path segments");
        assert!(StreamName::new("a..b").is_ok());
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
    }
}
