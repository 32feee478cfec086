//! The JSON shapes of the HTTP API, and their conversion to and from the
//! engine's types. Event `data` and `metadata` are JSON values stored as
//! their JSON text; a stored payload that is not JSON reads back as a
//! string.

use quipu_core::{
    AppendRequest, AppendResult, EventId, EventType, ExpectedRevision, ProposedEvent, RecordedEvent, Revision,
    StreamName, StreamWrite, Tag,
};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

use quipu_node::{ApiError, ErrorCode};

/// Body of `POST /v1/streams/{stream}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StreamAppend)]
pub struct AppendBody {
    /// `"any"`, `"no_stream"`, `"exists"` or a revision number; `"any"`
    /// when absent (as KurrentDB's HTTP API defaults). `null` is refused:
    /// an unset variable must not switch the concurrency check off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ExpectedRevisionSchema>)]
    pub expected_revision: Option<Value>,
    /// The events, in order.
    pub events: Vec<EventBody>,
}

/// A field that is there, `null` included (serde's `Option` would read
/// `null` as absent); with `#[serde(default)]`, absent is `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// An expected revision as the OpenAPI document shows it (the schema
/// `ExpectedRevision`); requests carry it as any JSON, which
/// [`expected_revision`] parses.
#[derive(Debug)]
pub struct ExpectedRevisionSchema;

impl utoipa::PartialSchema for ExpectedRevisionSchema {
    fn schema() -> RefOr<Schema> {
        let word = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["any", "no_stream", "exists"]));
        let revision = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        OneOfBuilder::new()
            .item(word)
            .item(revision)
            .description(Some("What the stream must be at for the append to go ahead: any revision or none, no stream, an existing stream, or this revision."))
            .default(Some(Value::from("any")))
            .into()
    }
}

impl ToSchema for ExpectedRevisionSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExpectedRevision")
    }
}

/// One proposed event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProposedEvent)]
pub struct EventBody {
    /// Client-chosen UUID; a retry with the same ids is a no-op. A new one
    /// is made when absent (the append is then not safe to retry).
    #[serde(default)]
    #[schema(format = "uuid")]
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload (any JSON), kept as the client wrote it: checked, not
    /// parsed into a tree and written out again, so its text (numbers of
    /// any size, key order, spacing) is stored as sent.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: Option<Box<RawValue>>,
    /// Metadata (any JSON), kept as the client wrote it.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub metadata: Option<Box<RawValue>>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Why a JSON number that is not a `u64` is no revision, in words that
/// do not depend on how it was parsed (a number past `u64::MAX` arrives
/// as a float, and would print as `1.8446744073709552e+19`).
fn not_a_revision(n: &serde_json::Number) -> String {
    let value = n.as_f64().unwrap_or(f64::NAN);
    let why = if n.is_i64() || value < 0.0 {
        "it is negative".to_string()
    } else if value.fract() != 0.0 {
        format!("{n} is not a whole number")
    } else if value >= u64::MAX as f64 {
        format!("it is larger than the largest revision, {}", u64::MAX)
    } else {
        format!("{value:.0} is written as a decimal; write it as a whole number")
    };
    format!("expected revision is not a revision number: {why}")
}

/// Parses an expected revision.
///
/// # Errors
/// [`ApiError`] 400 naming the value that is not one.
pub fn expected_revision(value: Option<&Value>) -> Result<ExpectedRevision, ApiError> {
    match value {
        None => Ok(ExpectedRevision::Any),
        Some(Value::String(word)) => ExpectedRevision::from_word(word).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidExpectedRevision,
                format!(
                    "unknown expected revision {word:?}; use \"any\", \"no_stream\", \"exists\" or a revision number"
                ),
            )
        }),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|r| ExpectedRevision::Exact(Revision(r)))
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidExpectedRevision, not_a_revision(n))),
        Some(Value::Null) => Err(ApiError::new(
            ErrorCode::InvalidExpectedRevision,
            "expected revision is null; leave it out or write \"any\" to append whatever the stream's revision, \
             or give \"no_stream\", \"exists\" or a revision number",
        )),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidExpectedRevision,
            format!("expected revision must be a word or a number, got {other}"),
        )),
    }
}

impl EventBody {
    /// The engine's event.
    ///
    /// # Errors
    /// [`ApiError`] 400 for a bad id, type or tag.
    pub fn into_proposed(self) -> Result<ProposedEvent, ApiError> {
        // Absent or null data is stored as `null`, absent or null metadata
        // as nothing; JSON text moves into the event without a copy.
        let data = self.data.map_or_else(|| b"null".to_vec(), json_bytes);
        let mut event = ProposedEvent::new(EventType::new(self.event_type)?, data);
        if let Some(id) = self.id {
            event.id = EventId::parse(&id)?;
        }
        if let Some(metadata) = self.metadata {
            event.metadata = json_bytes(metadata);
        }
        event.tags = self.tags.into_iter().map(Tag::new).collect::<Result<_, _>>()?;
        Ok(event)
    }
}

/// The bytes of JSON text, moved out of its box.
fn json_bytes(raw: Box<RawValue>) -> Vec<u8> {
    String::from(Box::<str>::from(raw)).into_bytes()
}

/// A stored event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventJson {
    /// Event id.
    pub id: String,
    /// Stream.
    pub stream: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload: the JSON written, or a string when it was not JSON.
    #[schema(value_type = Value)]
    pub data: Payload,
    /// Metadata (`null` when empty).
    #[schema(value_type = Value)]
    pub metadata: Payload,
    /// Tags.
    pub tags: Vec<String>,
    /// Revision in its stream.
    pub revision: u64,
    /// Position in `$all`.
    pub position: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub recorded_at: u64,
}

/// Stored bytes as they are written into a JSON answer: the stored text
/// itself when it is JSON (checked, not parsed into a tree and rendered
/// again: every SSE subscriber renders every event), else a string,
/// `null` when empty.
#[derive(Debug)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// The JSON for stored `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Payload {
        if bytes.is_empty() {
            return Payload::rendered(&Value::Null);
        }
        match serde_json::from_slice::<&RawValue>(bytes) {
            Ok(raw) => Payload(raw.to_owned()),
            Err(_) => Payload::rendered(&String::from_utf8_lossy(bytes)),
        }
    }

    /// The JSON text, as it goes into the answer.
    #[must_use]
    pub fn get(&self) -> &str {
        self.0.get()
    }

    fn rendered(value: &(impl Serialize + ?Sized)) -> Payload {
        let raw = serde_json::value::to_raw_value(value);
        debug_assert!(raw.is_ok(), "null and strings always render");
        Payload(raw.unwrap_or_else(|_| Box::<RawValue>::default()))
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Stored bytes as JSON: the value when they are JSON, else a string.
pub fn payload(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl From<RecordedEvent> for EventJson {
    fn from(e: RecordedEvent) -> EventJson {
        EventJson {
            id: e.id.to_string(),
            stream: e.stream.to_string(),
            event_type: e.event_type.to_string(),
            data: Payload::of(&e.data),
            metadata: Payload::of(&e.metadata),
            tags: e.tags.iter().map(ToString::to_string).collect(),
            revision: e.revision.0,
            position: e.position.0,
            recorded_at: e.recorded_at_us,
        }
    }
}

/// Answer to a successful (or repeated) append to one stream.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = AppendResult)]
pub struct AppendJson {
    /// Position of the first event.
    pub first_position: u64,
    /// Position of the last event.
    pub last_position: u64,
    /// The stream's revision after the append: the expected revision for
    /// the next one.
    pub next_expected_revision: u64,
    /// True when these event ids were written before and nothing new was.
    pub already_written: bool,
}

impl AppendJson {
    /// From the engine's result.
    #[must_use]
    pub fn new(result: &AppendResult, already_written: bool) -> AppendJson {
        AppendJson {
            first_position: result.first_position.0,
            last_position: result.last_position.0,
            next_expected_revision: result.streams.first().map_or(0, |s| s.last_revision.0),
            already_written,
        }
    }
}

/// Body of `POST /v1/append`: one atomic append over several streams.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MultiAppend)]
pub struct MultiAppendBody {
    /// Per-stream writes; all conditions hold or nothing is written.
    pub writes: Vec<WriteBody>,
    /// Optional DCB condition.
    #[serde(default)]
    pub condition: Option<ConditionBody>,
}

/// One stream's part of a multi-stream append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StreamWrite)]
pub struct WriteBody {
    /// The stream.
    pub stream: String,
    /// As in [`AppendBody`].
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ExpectedRevisionSchema>)]
    pub expected_revision: Option<Value>,
    /// The events (may be empty: the write is then only a condition).
    pub events: Vec<EventBody>,
}

/// DCB condition: fail if an event matching `query` exists after `after`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Condition)]
pub struct ConditionBody {
    /// Alternatives; an event matching one matches.
    pub query: Vec<QueryItemBody>,
    /// Last position the client saw; the whole log when absent.
    #[serde(default)]
    pub after: Option<u64>,
}

/// One alternative of a DCB query: any of `types` (any type when empty)
/// and all of `tags`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QueryItem)]
pub struct QueryItemBody {
    /// Event types.
    #[serde(default)]
    pub types: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl MultiAppendBody {
    /// The engine's request.
    ///
    /// # Errors
    /// [`ApiError`] 400 for any bad name, id or expected revision.
    pub fn into_request(self) -> Result<AppendRequest, ApiError> {
        let writes = self
            .writes
            .into_iter()
            .map(|w| {
                Ok(StreamWrite {
                    stream: StreamName::new(w.stream)?,
                    expected: expected_revision(w.expected_revision.as_ref())?,
                    events: w.events.into_iter().map(EventBody::into_proposed).collect::<Result<_, ApiError>>()?,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        let condition = self
            .condition
            .map(|c| {
                quipu_node::submission::condition(c.query.into_iter().map(|item| (item.types, item.tags)), c.after)
            })
            .transpose()?;
        Ok(AppendRequest { writes, condition })
    }
}

/// One stream's result of a multi-stream append.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = StreamResult)]
pub struct StreamResultJson {
    /// The stream.
    pub stream: String,
    /// Revision of its first new event.
    pub first_revision: u64,
    /// Revision of its last new event: the next expected revision.
    pub last_revision: u64,
}

/// Answer to a successful (or repeated) multi-stream append.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = MultiAppendResult)]
pub struct MultiAppendJson {
    /// Position of the first event.
    pub first_position: u64,
    /// Position of the last event.
    pub last_position: u64,
    /// Per stream that received events, in request order.
    pub streams: Vec<StreamResultJson>,
    /// True when these event ids were written before and nothing new was.
    pub already_written: bool,
}

impl MultiAppendJson {
    /// From the engine's result.
    #[must_use]
    pub fn new(result: &AppendResult, already_written: bool) -> MultiAppendJson {
        MultiAppendJson {
            first_position: result.first_position.0,
            last_position: result.last_position.0,
            streams: result
                .streams
                .iter()
                .map(|s| StreamResultJson {
                    stream: s.stream.to_string(),
                    first_revision: s.first_revision.0,
                    last_revision: s.last_revision.0,
                })
                .collect(),
            already_written,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(bytes: &[u8]) -> Value {
        let text = serde_json::to_string(&Payload::of(bytes)).expect("renders");
        serde_json::from_str(&text).expect("the answer is JSON")
    }

    fn proposed(body: &str) -> ProposedEvent {
        let body: EventBody = serde_json::from_str(body).expect("an event body");
        body.into_proposed().expect("a valid event")
    }

    #[test]
    fn a_number_that_is_no_revision_is_named_without_float_notation() {
        for (json, says) in [
            ("18446744073709551616", "larger than the largest revision, 18446744073709551615"),
            ("-1", "negative"),
            ("1.5", "1.5 is not a whole number"),
            ("1e3", "1000 is written as a decimal"),
        ] {
            let value: Value = serde_json::from_str(json).expect("JSON");
            let error = expected_revision(Some(&value)).expect_err(json);
            let text = format!("{error:?}");
            assert!(text.contains(says) && !text.contains("e+19"), "{json}: {text}");
        }
        assert_eq!(expected_revision(Some(&Value::from(7u64))).ok(), Some(ExpectedRevision::Exact(Revision(7))));
    }

    #[test]
    fn event_json_is_stored_as_the_client_wrote_it() {
        let data = r#"{"b": 1, "a": 12345678901234567890123, "x": 1.50}"#;
        let event = proposed(&format!(r#"{{"type": "T", "data": {data}, "metadata": {{"k": "v"}}}}"#));
        assert_eq!(event.data, data.as_bytes(), "key order, spacing and a number past 64 bits kept");
        assert_eq!(event.metadata, br#"{"k": "v"}"#);
        let event = proposed(r#"{"type": "T"}"#);
        assert_eq!((event.data.as_slice(), event.metadata.as_slice()), (&b"null"[..], &b""[..]), "absent");
        let event = proposed(r#"{"type": "T", "data": null, "metadata": null}"#);
        assert_eq!((event.data.as_slice(), event.metadata.as_slice()), (&b"null"[..], &b""[..]), "null");
        assert!(serde_json::from_str::<EventBody>(r#"{"type": "T", "data": {"open": }"#).is_err());
    }

    #[test]
    fn an_absent_expected_revision_is_any_and_a_null_one_is_refused() {
        let expected = |body: &str| {
            let body: AppendBody = serde_json::from_str(body).expect("an append body");
            expected_revision(body.expected_revision.as_ref())
        };
        assert_eq!(expected(r#"{"events": []}"#).expect("absent"), ExpectedRevision::Any);
        assert_eq!(expected(r#"{"expected_revision": "any", "events": []}"#).expect("any"), ExpectedRevision::Any);
        assert_eq!(
            expected(r#"{"expected_revision": 3, "events": []}"#).expect("3"),
            ExpectedRevision::Exact(Revision(3))
        );
        let refused = expected(r#"{"expected_revision": null, "events": []}"#).expect_err("null");
        assert_eq!(refused.code, ErrorCode::InvalidExpectedRevision);
        assert!(refused.message.contains("is null"), "{}", refused.message);
        let write: WriteBody =
            serde_json::from_str(r#"{"stream": "s-1", "expected_revision": null, "events": []}"#).expect("a write");
        assert!(expected_revision(write.expected_revision.as_ref()).is_err(), "in a multi-stream write too");
    }

    #[test]
    fn stored_json_goes_into_the_answer_as_it_is_and_anything_else_as_a_string() {
        assert_eq!(Payload::of(br#"{"amount":5,"note":"a\nb"}"#).get(), r#"{"amount":5,"note":"a\nb"}"#);
        assert_eq!(rendered(b" [1, 2.50, true] "), serde_json::json!([1, 2.5, true]), "surrounding space dropped");
        assert_eq!(rendered(b"not json"), Value::String("not json".into()));
        assert_eq!(rendered(br#"{"open": "#), Value::String(r#"{"open": "#.into()), "cut JSON is text");
        assert_eq!(rendered(b"\xff\xfe"), Value::String("\u{fffd}\u{fffd}".into()), "bytes that are not UTF-8");
        assert_eq!(rendered(b""), Value::Null);
    }
}
