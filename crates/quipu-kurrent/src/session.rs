//! `kurrentdb.protocol.v2.streams.StreamsService.AppendSession`: records
//! for several streams, each with its expected revision, committed as one
//! Quipu append (all or none) when the client closes its side.
//!
//! - A record's `schema.name` is its event type, its `record_id` its
//!   event id (made when absent), its data kept as sent. Its
//!   `properties` become the event's metadata, as a JSON object.
//! - A stream may appear once per session (`ABORTED`, as KurrentDB).
//! - A conflict is `FAILED_PRECONDITION` with a
//!   `StreamRevisionConflictErrorDetails` in the rich status; a
//!   tombstoned stream, a `StreamTombstonedErrorDetails`.

use std::collections::HashSet;
use std::sync::Arc;

use quipu_core::{
    AppendOutcome, AppendRequest, EventId, EventType, ExpectedRevision, ProposedEvent, Revision, StreamName,
    StreamWrite,
};
use quipu_proto::kurrentdb::protocol::v2::streams as pb;
use tonic::{Code, Request, Response, Status, Streaming};

use super::streams::StreamsService;
use super::wire;

use quipu_node::ErrorCode;

/// The v2 streams service.
pub struct SessionService {
    /// The v1 service, whose store, admission and lifecycle it shares.
    pub streams: Arc<StreamsService>,
}

#[tonic::async_trait]
impl pb::streams_service_server::StreamsService for SessionService {
    async fn append_session(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<pb::AppendSessionResponse>, Status> {
        let mut requests = request.into_inner();
        let mut writes: Vec<StreamWrite> = Vec::new();
        let mut seen = HashSet::new();
        while let Some(request) = requests.message().await? {
            let write = stream_write(request)?;
            if !seen.insert(write.stream.clone()) {
                let detail =
                    pb::errors::StreamAlreadyInAppendSessionErrorDetails { stream: write.stream.as_str().to_string() };
                let message = format!("Stream {} appears twice in one append session", write.stream);
                return Err(rich(Code::Aborted, &message, "StreamAlreadyInAppendSessionErrorDetails", &detail));
            }
            writes.push(write);
        }
        if writes.is_empty() {
            return Err(Status::failed_precondition("an append session needs at least one request"));
        }
        let expectations: Vec<(StreamName, ExpectedRevision)> =
            writes.iter().map(|w| (w.stream.clone(), w.expected)).collect();
        let request = AppendRequest { writes, condition: None };
        let service = &self.streams;
        let outcome =
            quipu_node::submission::submit(&service.store, &service.metrics, &service.admission, request).await;
        match outcome {
            Ok(AppendOutcome::Written(result) | AppendOutcome::AlreadyWritten(result)) => {
                let output = result
                    .streams
                    .iter()
                    .map(|s| pb::AppendResponse {
                        stream: s.stream.as_str().to_string(),
                        stream_revision: signed(s.last_revision.0),
                        position: None,
                    })
                    .collect();
                let position = signed(wire::commit_position(result.last_position.0));
                Ok(Response::new(pb::AppendSessionResponse { output, position }))
            }
            Ok(AppendOutcome::Conflict(conflict)) => Err(conflict_status(&conflict, &expectations)),
            Err(error) if error.code == ErrorCode::StreamDeleted => {
                let stream = expectations
                    .iter()
                    .map(|(stream, _)| stream.as_str())
                    .find(|stream| service.lifecycle.metadata(stream).tombstoned)
                    .unwrap_or_default()
                    .to_string();
                let message = format!("Event stream '{stream}' is deleted.");
                let detail = pb::errors::StreamTombstonedErrorDetails { stream };
                Err(rich(Code::FailedPrecondition, &message, "StreamTombstonedErrorDetails", &detail))
            }
            Err(error) => Err(wire::status(&error, "")),
        }
    }
}

/// One request as a write of the Quipu append.
fn stream_write(request: pb::AppendRequest) -> Result<StreamWrite, Status> {
    let stream = StreamName::new(request.stream).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let expected = match request.expected_revision {
        None | Some(-2) => ExpectedRevision::Any,
        Some(-1) => ExpectedRevision::NoStream,
        Some(-4) => ExpectedRevision::Exists,
        Some(revision) => ExpectedRevision::Exact(Revision(u64::try_from(revision).map_err(|_| {
            Status::invalid_argument(format!("expected revision {revision} is none of -1, -2, -4 or a revision"))
        })?)),
    };
    if request.records.is_empty() {
        return Err(Status::invalid_argument(format!("the request for stream {stream} has no records")));
    }
    let events = request.records.into_iter().map(proposed_event).collect::<Result<Vec<_>, Status>>()?;
    Ok(StreamWrite { stream, expected, events })
}

/// A record as a Quipu event.
fn proposed_event(record: pb::AppendRecord) -> Result<ProposedEvent, Status> {
    let id = match record.record_id.as_deref() {
        Some(text) => EventId::parse(text).map_err(|e| Status::invalid_argument(format!("record id {text:?}: {e}")))?,
        None => EventId::random(),
    };
    let name = record.schema.map(|schema| schema.name).unwrap_or_default();
    let event_type = EventType::new(name).map_err(|e| Status::invalid_argument(format!("schema name: {e}")))?;
    let metadata = if record.properties.is_empty() {
        Vec::new()
    } else {
        let object: serde_json::Map<String, serde_json::Value> =
            record.properties.into_iter().map(|(key, value)| (key, json(value))).collect();
        serde_json::to_vec(&object).map_err(|e| Status::internal(e.to_string()))?
    };
    Ok(ProposedEvent { id, event_type, data: record.data, metadata, tags: Vec::new() })
}

/// A protobuf `Value` as JSON.
fn json(value: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.into_iter().map(json).collect()),
        Some(Kind::StructValue(object)) => {
            serde_json::Value::Object(object.fields.into_iter().map(|(k, v)| (k, json(v))).collect())
        }
    }
}

/// FAILED_PRECONDITION naming the first stream whose expected revision
/// did not hold.
fn conflict_status(conflict: &quipu_core::Conflict, expectations: &[(StreamName, ExpectedRevision)]) -> Status {
    let Some(first) = conflict.streams.first() else {
        return Status::failed_precondition("the append's condition did not hold");
    };
    let expected = expectations.iter().find(|(s, _)| *s == first.stream).map_or(first.expected, |(_, e)| *e);
    let detail = pb::errors::StreamRevisionConflictErrorDetails {
        stream: first.stream.as_str().to_string(),
        expected_revision: wire::expected_number(expected),
        actual_revision: first.actual.map_or(-1, |r| signed(r.0)),
    };
    let message = format!(
        "Append failed due to a revision conflict on stream '{}': expected revision {}, actual revision {}",
        detail.stream, detail.expected_revision, detail.actual_revision
    );
    rich(Code::FailedPrecondition, &message, "StreamRevisionConflictErrorDetails", &detail)
}

/// A status carrying `detail` (of type
/// `kurrentdb.protocol.v2.streams.errors.<kind>`) in its rich status.
fn rich(code: Code, message: &str, kind: &str, detail: &impl prost::Message) -> Status {
    let status = quipu_proto::google::rpc::Status {
        code: code as i32,
        message: message.to_string(),
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/kurrentdb.protocol.v2.streams.errors.{kind}"),
            value: detail.encode_to_vec(),
        }),
    };
    Status::with_details(code, message, prost::Message::encode_to_vec(&status).into())
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_writes_and_bad_ones_are_refused() {
        let record = |name: &str| pb::AppendRecord {
            record_id: Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301".into()),
            schema: Some(pb::SchemaInfo { name: name.into(), ..pb::SchemaInfo::default() }),
            data: b"{}".to_vec(),
            properties: [(
                "by".to_string(),
                prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("node".into())) },
            )]
            .into_iter()
            .collect(),
            ..pb::AppendRecord::default()
        };
        let request = |expected: Option<i64>| pb::AppendRequest {
            stream: "order-1".into(),
            records: vec![record("Placed")],
            expected_revision: expected,
        };
        let write = stream_write(request(Some(-1))).expect("valid");
        assert_eq!(write.expected, ExpectedRevision::NoStream);
        let [event] = write.events.as_slice() else { panic!("one event") };
        assert_eq!(event.event_type.as_str(), "Placed");
        assert_eq!(event.metadata, br#"{"by":"node"}"#.to_vec());
        assert_eq!(stream_write(request(None)).expect("valid").expected, ExpectedRevision::Any);
        assert_eq!(stream_write(request(Some(3))).expect("valid").expected, ExpectedRevision::Exact(Revision(3)));
        assert!(stream_write(request(Some(-3))).is_err(), "no such constant");
        let empty = pb::AppendRequest { records: Vec::new(), ..request(None) };
        assert!(stream_write(empty).expect_err("no records").message().contains("no records"));
        let untyped = pb::AppendRequest { records: vec![record("")], ..request(None) };
        assert!(stream_write(untyped).is_err(), "a record needs a schema name");
    }
}
