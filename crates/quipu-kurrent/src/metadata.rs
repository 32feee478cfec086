//! `$$stream` metadata streams: the clients read and write a stream's
//! metadata as the JSON event of the stream `$$<stream>`, which Quipu
//! keeps as the stream's lifecycle metadata.
//!
//! | JSON key | Quipu |
//! | --- | --- |
//! | `$maxCount` | `max_count` |
//! | `$maxAge` (seconds) | `max_age_s` |
//! | `$tb` | `truncate_before` |
//! | any other key | kept in `custom`, given back as it came |
//!
//! The metadata stream shows the current metadata only, as one event
//! (type `$metadata`) at the metadata's revision: 0 for its first write,
//! one more for each later one (deletes included). An append replaces it
//! when its expected revision holds, checked and written under one lock,
//! so of two concurrent read-modify-writes one is refused.

use quipu_core::ExpectedRevision;
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::streams as pb;
use serde_json::{Map, Value};
use tonic::Status;

use super::wire;
use quipu_node::lifecycle::{Lifecycle, Metadata};

/// Prefix of a metadata stream.
const PREFIX: &str = "$$";

/// Event type of a metadata event.
const METADATA_TYPE: &str = "$metadata";

/// The stream whose metadata `identifier` names, when it names a
/// metadata stream.
#[must_use]
pub fn target(identifier: Option<&shared::StreamIdentifier>) -> Option<String> {
    let name = std::str::from_utf8(identifier?.stream_name.as_slice()).ok()?;
    name.strip_prefix(PREFIX).map(str::to_string)
}

/// The JSON the clients read for `metadata`.
#[must_use]
pub fn to_json(metadata: &Metadata) -> Value {
    let mut object = match &metadata.custom {
        Some(Value::Object(custom)) => custom.clone(),
        _ => Map::new(),
    };
    let mut put = |key: &str, value: Option<u64>| {
        if let Some(value) = value {
            object.insert(key.to_string(), Value::from(value));
        }
    };
    put("$maxCount", metadata.max_count);
    put("$maxAge", metadata.max_age_s);
    put("$tb", metadata.truncate_before);
    Value::Object(object)
}

/// The metadata the clients wrote as `data`.
///
/// # Errors
/// INVALID_ARGUMENT for data that is not a JSON object, or a `$maxCount`,
/// `$maxAge` or `$tb` that is not a non-negative integer.
pub fn from_json(data: &[u8]) -> Result<Metadata, Status> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(data) else {
        return Err(Status::invalid_argument("stream metadata is a JSON object"));
    };
    let mut take = |key: &str| -> Result<Option<u64>, Status> {
        match object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| Status::invalid_argument(format!("{key} must be a non-negative integer, not {value}"))),
        }
    };
    let (max_count, max_age_s, truncate_before) = (take("$maxCount")?, take("$maxAge")?, take("$tb")?);
    let custom = (!object.is_empty()).then_some(Value::Object(object));
    Ok(Metadata { max_count, max_age_s, truncate_before, custom, tombstoned: false })
}

/// The answers to a read of `$$target`: its one event, or not found.
#[must_use]
pub fn read(lifecycle: &Lifecycle, target: &str, structured: bool) -> Vec<Result<pb::ReadResp, Status>> {
    let metadata = lifecycle.metadata(target);
    let stream = format!("{PREFIX}{target}");
    let Some(revision) = lifecycle.metadata_revision(target) else {
        let missing = pb::read_resp::StreamNotFound { stream_identifier: Some(wire::identifier(&stream)) };
        return vec![Ok(pb::ReadResp { content: Some(pb::read_resp::Content::StreamNotFound(missing)) })];
    };
    let data = serde_json::to_vec(&to_json(&Metadata { tombstoned: false, ..metadata })).unwrap_or_default();
    let recorded = pb::read_resp::read_event::RecordedEvent {
        id: Some(wire::uuid(quipu_core::EventId::random(), structured)),
        stream_identifier: Some(wire::identifier(&stream)),
        stream_revision: revision,
        prepare_position: 0,
        commit_position: 0,
        metadata: [("type", METADATA_TYPE), ("content-type", "application/json"), ("created", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        custom_metadata: Vec::new(),
        data,
    };
    let event = pb::read_resp::ReadEvent {
        event: Some(recorded),
        link: None,
        position: Some(pb::read_resp::read_event::Position::CommitPosition(0)),
    };
    vec![Ok(pb::ReadResp { content: Some(pb::read_resp::Content::Event(event)) })]
}

/// What a metadata write came to: the metadata's new revision, or the
/// conflict with the revision it has.
pub type Written = Result<u64, quipu_core::AppendOutcome>;

/// Replaces the metadata of `target` with `data` when `expected` holds
/// for the metadata's revision.
///
/// # Errors
/// INVALID_ARGUMENT for data that is not metadata; the lifecycle's
/// refusals (a tombstoned stream).
pub async fn write(
    lifecycle: &Lifecycle,
    target: &str,
    expected: ExpectedRevision,
    data: &[u8],
) -> Result<Written, Status> {
    let metadata = from_json(data)?;
    let written = lifecycle.set_expecting(target, metadata, expected).await.map_err(|e| wire::status(&e, target))?;
    match written {
        Ok(revision) => Ok(Ok(revision)),
        Err(actual) => {
            let stream = quipu_core::StreamName::readable(format!("{PREFIX}{target}"))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let actual = actual.map(quipu_core::Revision);
            let conflict = quipu_core::Conflict {
                streams: vec![quipu_core::StreamConflict { stream, expected, actual }],
                condition_position: None,
            };
            Ok(Err(quipu_core::AppendOutcome::Conflict(conflict)))
        }
    }
}

/// `Append`'s answer to a metadata write.
#[must_use]
pub fn append_answer(written: Written, expected: ExpectedRevision) -> pb::AppendResp {
    use pb::append_resp::success::{CurrentRevisionOption, PositionOption};
    match written {
        Ok(revision) => {
            let success = pb::append_resp::Success {
                current_revision_option: Some(CurrentRevisionOption::CurrentRevision(revision)),
                position_option: Some(PositionOption::NoPosition(shared::Empty {})),
            };
            pb::AppendResp { result: Some(pb::append_resp::Result::Success(success)) }
        }
        Err(conflict) => super::answer::append(conflict, expected),
    }
}

/// `BatchAppend`'s result for a metadata write.
#[must_use]
pub fn batch_answer(written: Written, expected: ExpectedRevision) -> pb::batch_append_resp::Result {
    use pb::batch_append_resp::success::{CurrentRevisionOption, PositionOption};
    match written {
        Ok(revision) => pb::batch_append_resp::Result::Success(pb::batch_append_resp::Success {
            current_revision_option: Some(CurrentRevisionOption::CurrentRevision(revision)),
            position_option: Some(PositionOption::NoPosition(())),
        }),
        Err(conflict) => super::answer::batch(conflict, expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_the_clients_json() {
        let json = br#"{"$maxCount": 3, "$maxAge": 60, "$tb": 2, "$acl": {"$r": "$all"}, "owner": "ops"}"#;
        let metadata = from_json(json).expect("valid");
        assert_eq!((metadata.max_count, metadata.max_age_s, metadata.truncate_before), (Some(3), Some(60), Some(2)));
        let back = to_json(&metadata);
        assert_eq!(back, serde_json::from_slice::<Value>(json).expect("JSON"));
    }

    #[test]
    fn bad_metadata_is_refused() {
        assert!(from_json(b"[]").is_err());
        let refused = from_json(br#"{"$maxCount": -1}"#).expect_err("negative");
        assert!(refused.message().contains("$maxCount must be a non-negative integer"), "{}", refused.message());
    }

    #[test]
    fn only_double_dollar_streams_are_metadata_streams() {
        let id = |name: &str| Some(wire::identifier(name));
        assert_eq!(target(id("$$order-1").as_ref()), Some("order-1".into()));
        assert_eq!(target(id("order-1").as_ref()), None);
        assert_eq!(target(id("$all").as_ref()), None);
    }
}
