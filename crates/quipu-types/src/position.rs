//! Places in the log and in a stream: [`Position`] in the global log
//! (`$all`), [`Revision`] within one stream, and the [`ExpectedRevision`]
//! an append states for optimistic concurrency.
//!
//! They are distinct types so a stream revision can never be passed where
//! a global position is meant.

use std::fmt;

/// Place of an event in the global log (`$all`).
///
/// Positions are strictly increasing in log order. Clients must treat them
/// as gap-tolerant: today they are dense (0, 1, 2, ...), but nothing may
/// rely on that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl Position {
    /// The first position of an empty log.
    pub const START: Position = Position(0);

    /// The position right after this one.
    #[must_use]
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

/// The number, as `u64` writes it; width, fill and alignment apply, so a
/// position lines up in a table as its number would.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// 0-based index of an event within its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision right after this one.
    #[must_use]
    pub fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

/// The number, as `u64` writes it; width, fill and alignment apply, so a
/// revision lines up in a table as its number would.
impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What an append expects of a stream's state; the append fails with a
/// conflict when the stream is in another state. The default is no check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedRevision {
    /// No check: append whatever the stream's state.
    #[default]
    Any,
    /// The stream must not exist (have no events).
    NoStream,
    /// The stream must exist (have at least one event).
    Exists,
    /// The stream's last event must have exactly this revision.
    Exact(Revision),
}

impl ExpectedRevision {
    /// What to expect of a stream whose last revision was `last` (`None`:
    /// no stream): exactly that revision, or no stream.
    #[must_use]
    pub fn from_last(last: Option<Revision>) -> ExpectedRevision {
        last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact)
    }

    /// Whether a stream whose last revision is `actual` (`None`: no stream)
    /// satisfies this expectation.
    #[must_use]
    pub fn is_met_by(self, actual: Option<Revision>) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => actual.is_none(),
            ExpectedRevision::Exists => actual.is_some(),
            ExpectedRevision::Exact(expected) => actual == Some(expected),
        }
    }
}

impl ExpectedRevision {
    /// The expectation a word names: `any`, `no_stream` or `exists`
    /// (`stream_exists`, the Kafka header's first spelling, is taken too);
    /// `None` for any other word.
    #[must_use]
    pub fn from_word(word: &str) -> Option<ExpectedRevision> {
        match word {
            "any" => Some(ExpectedRevision::Any),
            "no_stream" => Some(ExpectedRevision::NoStream),
            "exists" | "stream_exists" => Some(ExpectedRevision::Exists),
            _ => None,
        }
    }
}

/// Text that names no expected revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown expected revision {text:?}; use any, no_stream, exists or a revision number")]
pub struct ExpectedRevisionError {
    /// The text, as given.
    pub text: String,
}

impl std::str::FromStr for ExpectedRevision {
    type Err = ExpectedRevisionError;

    /// A word of [`ExpectedRevision::from_word`] or a revision number, as
    /// [`ExpectedRevision`]'s `Display` writes them (surrounding spaces
    /// ignored).
    fn from_str(text: &str) -> Result<ExpectedRevision, ExpectedRevisionError> {
        let trimmed = text.trim();
        ExpectedRevision::from_word(trimmed)
            .or_else(|| trimmed.parse().ok().map(|r| ExpectedRevision::Exact(Revision(r))))
            .ok_or_else(|| ExpectedRevisionError { text: text.to_string() })
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no_stream"),
            ExpectedRevision::Exists => f.write_str("exists"),
            ExpectedRevision::Exact(revision) => write!(f, "{revision}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expectation_after_a_read_is_its_last_revision_or_no_stream() {
        assert_eq!(ExpectedRevision::from_last(None), ExpectedRevision::NoStream);
        assert_eq!(ExpectedRevision::from_last(Some(Revision(4))), ExpectedRevision::Exact(Revision(4)));
        assert_eq!(ExpectedRevision::default(), ExpectedRevision::Any);
    }

    #[test]
    fn expectations_match_stream_states() {
        let none = None;
        let at_two = Some(Revision(2));
        assert!(ExpectedRevision::Any.is_met_by(none));
        assert!(ExpectedRevision::Any.is_met_by(at_two));
        assert!(ExpectedRevision::NoStream.is_met_by(none));
        assert!(!ExpectedRevision::NoStream.is_met_by(at_two));
        assert!(!ExpectedRevision::Exists.is_met_by(none));
        assert!(ExpectedRevision::Exists.is_met_by(at_two));
        assert!(ExpectedRevision::Exact(Revision(2)).is_met_by(at_two));
        assert!(!ExpectedRevision::Exact(Revision(1)).is_met_by(at_two));
        assert!(!ExpectedRevision::Exact(Revision(0)).is_met_by(none));
    }

    #[test]
    fn positions_and_revisions_display_as_their_numbers_do() {
        assert_eq!(Position(42).to_string(), "42");
        assert_eq!(Revision(7).to_string(), "7");
        assert_eq!(format!("{:>6}|{:<4}|", Position(42), Revision(7)), "    42|7   |");
    }

    #[test]
    fn what_display_writes_parses_back_and_nothing_else_does() {
        for expected in [
            ExpectedRevision::Any,
            ExpectedRevision::NoStream,
            ExpectedRevision::Exists,
            ExpectedRevision::Exact(Revision(0)),
            ExpectedRevision::Exact(Revision(u64::MAX)),
        ] {
            assert_eq!(expected.to_string().parse::<ExpectedRevision>(), Ok(expected));
        }
        assert_eq!(" stream_exists ".parse::<ExpectedRevision>(), Ok(ExpectedRevision::Exists));
        for bad in ["", "Any", "-1", "1.5", "exist", "18446744073709551616"] {
            let error = bad.parse::<ExpectedRevision>().expect_err(bad);
            assert_eq!(error.text, bad);
            assert!(error.to_string().contains("use any, no_stream, exists"), "{error}");
        }
    }
}
