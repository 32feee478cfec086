//! What defines a consumer group: its name, which events it takes, where
//! it starts, and how it retries. Settings are checked when a group is
//! created or updated, with an error that names the field; they are kept
//! as JSON in the system stream `$groups`.

use std::sync::Arc;
use std::time::Duration;

use quipu_core::{Position, RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};

use super::dispatcher::{Strategy, Tuning};
use crate::feed::Source;
use crate::integration::IntegrationTypes;
use crate::{ApiError, ErrorCode};

/// Longest group name, in bytes.
pub const GROUP_NAME_BYTES_MAX: usize = 200;

/// Most events a member may hold at once.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 10_000;

/// Which events a group takes: every set field must match. System streams
/// (names starting with `$`) are never delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Streams of this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Events of one of these types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Events carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Streams whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    /// Only integration events (of the types marked when they are read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integration: bool,
    /// Events of this one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// With `stream`: only its events at this revision or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    /// Streams whose name matches this regular expression (unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_regex: Option<Pattern>,
    /// Events whose type matches this regular expression (unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_regex: Option<Pattern>,
}

/// A regular expression a filter tests names with, kept as its text. It
/// runs on `fancy-regex`, so the lookarounds and backreferences of .NET
/// and Python expressions work; an expression too costly to decide on
/// some name does not match it.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    regex: Arc<fancy_regex::Regex>,
}

impl Pattern {
    /// Compiles `text`.
    ///
    /// # Errors
    /// A 400 `invalid_group` quoting the expression and why it does not
    /// compile.
    pub fn new(text: &str) -> Result<Pattern, ApiError> {
        let regex = fancy_regex::Regex::new(text).map_err(|error| {
            ApiError::new(ErrorCode::InvalidGroup, format!("regular expression {text:?} does not compile: {error}"))
        })?;
        Ok(Pattern { text: text.to_string(), regex: Arc::new(regex) })
    }

    /// The expression as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the expression matches somewhere in `name`.
    #[must_use]
    pub fn is_match(&self, name: &str) -> bool {
        self.regex.is_match(name).unwrap_or(false)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(&text).map_err(|error| serde::de::Error::custom(error.message))
    }
}

impl Filter {
    /// Whether the group takes `event`.
    #[must_use]
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let stream = event.stream.as_str();
        !stream.starts_with('$')
            && self.category.as_deref().is_none_or(|c| event.stream.category() == c)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event.event_type.as_str()))
            && self.tag.as_deref().is_none_or(|tag| event.tags.iter().any(|t| t.as_str() == tag))
            && self.stream_prefix.as_deref().is_none_or(|p| stream.starts_with(p))
            && self.stream.as_deref().is_none_or(|s| stream == s)
            && self.from_revision.is_none_or(|r| event.revision.0 >= r)
            && self.stream_regex.as_ref().is_none_or(|p| p.is_match(stream))
            && self.type_regex.as_ref().is_none_or(|p| p.is_match(event.event_type.as_str()))
    }

    /// The narrowest index that holds every matching event: the
    /// integration events of `integration` when the filter asks for them.
    ///
    /// # Errors
    /// A 400 naming a type or tag that is not a valid name.
    pub fn source(&self, integration: &Arc<IntegrationTypes>) -> Result<Source, ApiError> {
        if let Some(stream) = &self.stream {
            return Ok(Source::Stream(StreamName::new(stream.clone()).map_err(invalid)?));
        }
        if self.integration {
            return Ok(Source::Integration(Arc::clone(integration)));
        }
        if let Some(category) = &self.category {
            return Ok(Source::Category(category.clone()));
        }
        if let Some(tag) = &self.tag {
            return Ok(Source::Tag(quipu_core::Tag::new(tag.clone()).map_err(invalid)?));
        }
        if let [event_type] = self.event_types.as_slice() {
            return Ok(Source::Type(quipu_core::EventType::new(event_type.clone()).map_err(invalid)?));
        }
        Ok(Source::All)
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.category.as_deref().is_some_and(|c| c.is_empty() || c.starts_with('$')) {
            return Err(invalid_field("filter.category", "must not be empty or start with '$'"));
        }
        if self.stream_prefix.as_deref().is_some_and(|p| p.is_empty() || p.starts_with('$')) {
            return Err(invalid_field("filter.stream_prefix", "must not be empty or start with '$'"));
        }
        for event_type in &self.event_types {
            quipu_core::EventType::new(event_type.clone()).map_err(invalid)?;
        }
        if let Some(tag) = &self.tag {
            quipu_core::Tag::new(tag.clone()).map_err(invalid)?;
        }
        match &self.stream {
            Some(stream) => drop(StreamName::new(stream.clone()).map_err(invalid)?),
            None if self.from_revision.is_some() => {
                return Err(invalid_field("filter.from_revision", "needs filter.stream"));
            }
            None => {}
        }
        Ok(())
    }
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The first event of the log.
    Beginning,
    /// After the last event written when the group is created.
    End,
    /// This position (inclusive).
    Position(u64),
}

/// A group as kept in `$groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The group's name.
    pub name: String,
    /// Set at creation, unique among every group ever created: checkpoint
    /// and parked records carry it, so a group created again under an old
    /// name starts afresh.
    pub id: u64,
    /// Which events it takes.
    #[serde(default)]
    pub filter: Filter,
    /// First position it delivers (resolved from [`StartFrom`]).
    pub start: u64,
    /// Retries before an event is parked.
    pub max_retries: u32,
    /// How long a delivered event may stay unacknowledged, ms.
    pub message_timeout_ms: u64,
    /// Most events one member holds at once.
    pub max_in_flight: u32,
    /// First retry's backoff, ms; doubles per retry.
    pub backoff_base_ms: u64,
    /// Longest backoff, ms.
    pub backoff_max_ms: u64,
    /// Revision of the parked stream where this group's records begin.
    #[serde(default)]
    pub parked_from: u64,
    /// How it shares events among its members.
    #[serde(default)]
    pub strategy: Strategy,
    /// Settings a client protocol keeps with the group (the KurrentDB
    /// door keeps its persistent subscription's here); kept and returned
    /// as given, never read by the group itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_settings: Option<serde_json::Value>,
    /// In cluster mode, the node the group runs on (set to the node that
    /// creates it, changed by a move). `None` for a group made by a node
    /// standing alone, which runs every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}

/// Tuning a request may set; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningRequest {
    /// Retries before an event is parked (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Message timeout, ms (default 30,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_timeout_ms: Option<u64>,
    /// Most events one member holds (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// First retry's backoff, ms (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base_ms: Option<u64>,
    /// Longest backoff, ms (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
}

impl Settings {
    /// Settings of a new group, checked; `start` is already resolved.
    ///
    /// # Errors
    /// A 400 naming the field that is wrong.
    pub fn new(name: &str, id: u64, filter: Filter, start: u64, tuning: &TuningRequest) -> Result<Settings, ApiError> {
        check_name(name)?;
        filter.check()?;
        let settings = Settings {
            name: name.to_string(),
            id,
            filter,
            start,
            max_retries: 10,
            message_timeout_ms: 30_000,
            max_in_flight: 100,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            parked_from: 0,
            strategy: Strategy::PerStream,
            client_settings: None,
            home: None,
        };
        settings.retuned(tuning)
    }

    /// These settings with `tuning` applied, checked.
    ///
    /// # Errors
    /// A 400 naming the field that is out of range.
    pub fn retuned(&self, tuning: &TuningRequest) -> Result<Settings, ApiError> {
        let mut next = self.clone();
        next.max_retries = tuning.max_retries.unwrap_or(next.max_retries);
        next.message_timeout_ms = tuning.message_timeout_ms.unwrap_or(next.message_timeout_ms);
        next.max_in_flight = tuning.max_in_flight.unwrap_or(next.max_in_flight);
        next.backoff_base_ms = tuning.backoff_base_ms.unwrap_or(next.backoff_base_ms);
        next.backoff_max_ms = tuning.backoff_max_ms.unwrap_or(next.backoff_max_ms);
        if next.max_retries > 1000 {
            return Err(invalid_field("max_retries", "must be at most 1000"));
        }
        if !(100..=3_600_000).contains(&next.message_timeout_ms) {
            return Err(invalid_field("message_timeout_ms", "must be between 100 and 3,600,000"));
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&next.max_in_flight) {
            return Err(invalid_field("max_in_flight", "must be between 1 and 10,000"));
        }
        if next.backoff_base_ms > next.backoff_max_ms || next.backoff_max_ms > 3_600_000 {
            return Err(invalid_field("backoff_base_ms", "must be at most backoff_max_ms, itself at most 3,600,000"));
        }
        Ok(next)
    }

    /// The dispatcher's view of the retry settings.
    #[must_use]
    pub fn tuning(&self) -> Tuning {
        Tuning {
            max_retries: self.max_retries,
            message_timeout: Duration::from_millis(self.message_timeout_ms),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    /// First position the group delivers.
    #[must_use]
    pub fn start_position(&self) -> Position {
        Position(self.start)
    }

    /// The stream holding the group's checkpoints.
    #[must_use]
    pub fn checkpoint_stream(&self) -> String {
        format!("$checkpoint-{}", self.name)
    }

    /// The stream holding the group's parked events.
    #[must_use]
    pub fn parked_stream(&self) -> String {
        format!("$parked-{}", self.name)
    }
}

/// Checks a group name: a valid stream name (it names system streams) of
/// at most [`GROUP_NAME_BYTES_MAX`] bytes.
///
/// # Errors
/// A 400 saying which rule the name breaks.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.len() > GROUP_NAME_BYTES_MAX {
        return Err(invalid_field(
            "name",
            &format!("is {} bytes long, at most {GROUP_NAME_BYTES_MAX} are allowed", name.len()),
        ));
    }
    StreamName::new(name)
        .map_err(|error| ApiError::new(ErrorCode::InvalidGroup, format!("invalid group name: {error}")))?;
    Ok(())
}

fn invalid(error: quipu_core::NameError) -> ApiError {
    ApiError::new(ErrorCode::InvalidGroup, format!("invalid group filter: {error}"))
}

fn invalid_field(field: &str, rule: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidGroup, format!("invalid group setting {field}: {rule}"))
        .with("field", serde_json::json!(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let settings = Settings::new("billing", 1, Filter::default(), 0, &TuningRequest::default()).expect("valid");
        assert_eq!((settings.max_retries, settings.max_in_flight), (10, 100));
        let cases: [(TuningRequest, &str); 4] = [
            (TuningRequest { max_in_flight: Some(0), ..TuningRequest::default() }, "max_in_flight"),
            (TuningRequest { message_timeout_ms: Some(5), ..TuningRequest::default() }, "message_timeout_ms"),
            (TuningRequest { max_retries: Some(5000), ..TuningRequest::default() }, "max_retries"),
            (TuningRequest { backoff_base_ms: Some(20_000), ..TuningRequest::default() }, "backoff_base_ms"),
        ];
        for (tuning, field) in cases {
            let error = settings.retuned(&tuning).expect_err(field);
            assert_eq!(error.code, ErrorCode::InvalidGroup);
            assert!(error.message.contains(field), "{}", error.message);
        }
    }

    #[test]
    fn a_home_is_kept_only_when_set_so_old_records_still_load() {
        let settings = Settings::new("billing", 1, Filter::default(), 0, &TuningRequest::default()).expect("valid");
        let alone = serde_json::to_value(&settings).expect("encodes");
        assert!(alone.get("home").is_none(), "no home, no field: {alone}");
        let old: Settings = serde_json::from_value(alone).expect("a record without a home decodes");
        assert_eq!(old.home, None);
        let homed = Settings { home: Some("node-a".into()), ..settings };
        let kept: Settings = serde_json::from_value(serde_json::to_value(&homed).expect("encodes")).expect("decodes");
        assert_eq!(kept.home.as_deref(), Some("node-a"));
    }

    #[test]
    fn names_and_filters_are_checked() {
        let t = TuningRequest::default();
        for bad in ["", "$system", " padded", &"x".repeat(201)] {
            assert!(Settings::new(bad, 1, Filter::default(), 0, &t).is_err(), "{bad:?}");
        }
        let bad_filters = [
            Filter { category: Some("$all".into()), ..Filter::default() },
            Filter { stream_prefix: Some(String::new()), ..Filter::default() },
            Filter { event_types: vec!["bad\ttype".into()], ..Filter::default() },
        ];
        for filter in bad_filters {
            assert!(Settings::new("g", 1, filter.clone(), 0, &t).is_err(), "{filter:?}");
        }
    }

    #[test]
    fn a_filter_takes_what_every_field_allows_and_never_system_streams() {
        let event = |stream: &str, event_type: &str| RecordedEvent {
            id: quipu_core::EventId::random(),
            stream: StreamName::readable(stream).expect("valid"),
            revision: quipu_core::Revision(0),
            position: Position(0),
            event_type: quipu_core::EventType::new(event_type).expect("valid"),
            data: Vec::new(),
            metadata: Vec::new(),
            tags: vec![quipu_core::Tag::new("vip").expect("valid")],
            recorded_at_us: 0,
        };
        let filter = Filter {
            category: Some("order".into()),
            event_types: vec!["Placed".into(), "Paid".into()],
            tag: Some("vip".into()),
            stream_prefix: Some("order-4".into()),
            ..Filter::default()
        };
        assert!(filter.matches(&event("order-42", "Paid")));
        assert!(!filter.matches(&event("order-52", "Paid")));
        assert!(!filter.matches(&event("order-42", "Shipped")));
        assert!(!filter.matches(&event("invoice-42", "Paid")));
        assert!(Filter::default().matches(&event("order-42", "Shipped")));
        assert!(!Filter::default().matches(&event("$checkpoint-g", "Checkpoint")), "system streams never match");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(quipu_core::Store::open(dir.path(), quipu_core::Options::default()).expect("store"));
        let integration = Arc::new(IntegrationTypes::open(store).expect("integration types"));
        assert!(matches!(filter.source(&integration), Ok(Source::Category(c)) if c == "order"));
        let one_type = Filter { event_types: vec!["Paid".into()], ..Filter::default() };
        assert!(matches!(one_type.source(&integration), Ok(Source::Type(_))));
        assert!(matches!(Filter::default().source(&integration), Ok(Source::All)));
        let integration_only = Filter { integration: true, ..filter };
        assert!(matches!(integration_only.source(&integration), Ok(Source::Integration(_))));
    }

    #[test]
    fn a_filter_on_one_stream_and_on_expressions() {
        let event = |stream: &str, revision: u64, event_type: &str| RecordedEvent {
            id: quipu_core::EventId::random(),
            stream: StreamName::readable(stream).expect("valid"),
            revision: quipu_core::Revision(revision),
            position: Position(0),
            event_type: quipu_core::EventType::new(event_type).expect("valid"),
            data: Vec::new(),
            metadata: Vec::new(),
            tags: Vec::new(),
            recorded_at_us: 0,
        };
        let one_stream = Filter { stream: Some("order-1".into()), from_revision: Some(2), ..Filter::default() };
        assert!(one_stream.matches(&event("order-1", 2, "Paid")));
        assert!(!one_stream.matches(&event("order-1", 1, "Paid")), "before the first revision");
        assert!(!one_stream.matches(&event("order-10", 5, "Paid")), "another stream");
        // The Python KurrentDB client's default exclusion, a lookahead.
        let not_system = Pattern::new(r"^(?!(\$.+$|PersistentConfig\d+$|Result$))").expect("compiles");
        let by_type = Filter {
            type_regex: Some(not_system),
            stream_regex: Some(Pattern::new("^order-").expect("compiles")),
            ..Filter::default()
        };
        assert!(by_type.matches(&event("order-1", 0, "Paid")));
        assert!(!by_type.matches(&event("order-1", 0, "Result")));
        assert!(!by_type.matches(&event("invoice-1", 0, "Paid")));
        let kept: Filter = serde_json::from_value(serde_json::to_value(&by_type).expect("encodes")).expect("decodes");
        assert_eq!(kept, by_type);
        let bad = serde_json::from_value::<Filter>(serde_json::json!({"type_regex": "("}));
        assert!(bad.expect_err("does not compile").to_string().contains("does not compile"));
        let t = TuningRequest::default();
        let orphan = Filter { from_revision: Some(1), ..Filter::default() };
        assert!(Settings::new("g", 1, orphan, 0, &t).is_err(), "a first revision needs a stream");
        let system = Filter { stream: Some("$groups".into()), ..Filter::default() };
        assert!(Settings::new("g", 1, system, 0, &t).is_err(), "no system stream");
    }
}
