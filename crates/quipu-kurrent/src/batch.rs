//! `BatchAppend`: many appends over one call, told apart by correlation
//! id, each sent in chunks and committed atomically on its final chunk.
//! Answers go back as each append completes; the call ends once the client
//! has sent everything and every append has its answer.

use std::collections::HashMap;
use std::sync::Arc;

use quipu_core::{ExpectedRevision, ProposedEvent, StreamName};
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::streams as pb;
use tokio::sync::mpsc::Sender;
use tonic::{Status, Streaming};

use super::streams::StreamsService;
use super::{answer, metadata, wire};

use quipu_node::ErrorCode;

/// Where an append goes.
enum Target {
    /// Events of a stream.
    Stream(StreamName),
    /// The metadata of this stream, through `$$<stream>`.
    Metadata(String),
}

impl Target {
    /// The stream name as the client wrote it.
    fn name(&self) -> String {
        match self {
            Target::Stream(stream) => stream.as_str().to_string(),
            Target::Metadata(stream) => format!("$${stream}"),
        }
    }
}

/// An append still receiving chunks.
struct Pending {
    target: Target,
    expected: ExpectedRevision,
    events: Vec<ProposedEvent>,
}

/// Reads `requests` until the client is done, answering on `answers`.
pub async fn run(
    service: Arc<StreamsService>,
    mut requests: Streaming<pb::BatchAppendReq>,
    answers: Sender<Result<pb::BatchAppendResp, Status>>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let request = match requests.message().await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(status) => {
                let _ = answers.send(Err(status)).await;
                return;
            }
        };
        let Some(correlation) = request.correlation_id.clone() else {
            let _ = answers.send(Err(Status::invalid_argument("a batch append chunk has no correlation id"))).await;
            return;
        };
        let key = match wire::event_id(Some(&correlation)) {
            Ok(id) => id.to_string(),
            Err(status) => {
                let _ = answers.send(Err(status)).await;
                return;
            }
        };
        match chunk(&mut pending, &key, request) {
            Ok(None) => {}
            Ok(Some(append)) => {
                let (service, answers) = (Arc::clone(&service), answers.clone());
                tokio::spawn(async move {
                    let answer = commit(&service, correlation, append).await;
                    let _ = answers.send(Ok(answer)).await;
                });
            }
            Err((stream, status)) => {
                pending.remove(&key);
                let detail = shared::BadRequest { message: status.message().to_string() };
                let answer = pb::BatchAppendResp {
                    correlation_id: Some(correlation),
                    result: Some(pb::batch_append_resp::Result::Error(answer::error(
                        3,
                        "BadRequest",
                        "BadRequest",
                        &detail,
                    ))),
                    stream_identifier: Some(wire::identifier(&stream)),
                    expected_stream_position: None,
                };
                let _ = answers.send(Ok(answer)).await;
            }
        }
    }
}

/// Adds a chunk to its append; the append once its final chunk came.
fn chunk(
    pending: &mut HashMap<String, Pending>,
    key: &str,
    request: pb::BatchAppendReq,
) -> Result<Option<Pending>, (String, Status)> {
    use pb::batch_append_req::options::ExpectedStreamPosition as E;
    if let Some(options) = request.options {
        let target = match metadata::target(options.stream_identifier.as_ref()) {
            Some(stream) => Target::Metadata(stream),
            None => {
                Target::Stream(wire::stream_name(options.stream_identifier.as_ref()).map_err(|s| (String::new(), s))?)
            }
        };
        let expected = match options.expected_stream_position {
            Some(E::StreamPosition(revision)) => wire::expected(Some(revision), false, false),
            Some(E::NoStream(())) => ExpectedRevision::NoStream,
            Some(E::StreamExists(())) => ExpectedRevision::Exists,
            Some(E::Any(())) | None => ExpectedRevision::Any,
        };
        pending.insert(key.to_string(), Pending { target, expected, events: Vec::new() });
    }
    let Some(append) = pending.get_mut(key) else {
        return Err((String::new(), Status::invalid_argument("the first chunk of a batch append carries its options")));
    };
    for m in request.proposed_messages {
        let event = wire::proposed_event(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data)
            .map_err(|s| (append.target.name(), s))?;
        append.events.push(event);
    }
    if request.is_final { Ok(pending.remove(key)) } else { Ok(None) }
}

/// Commits one append; its answer.
async fn commit(service: &StreamsService, correlation: shared::Uuid, append: Pending) -> pb::BatchAppendResp {
    let stream = append.target.name();
    let bad_request = |message: String| {
        let detail = shared::BadRequest { message };
        pb::batch_append_resp::Result::Error(answer::error(3, "BadRequest", "BadRequest", &detail))
    };
    let result = match (append.target, append.events.last()) {
        (_, None) => bad_request("an append without events writes nothing".into()),
        (Target::Metadata(target), Some(last)) => {
            match metadata::write(&service.lifecycle, &target, append.expected, &last.data).await {
                Ok(written) => metadata::batch_answer(written, append.expected),
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    let detail = shared::StreamDeleted { stream_identifier: Some(wire::identifier(&stream)) };
                    pb::batch_append_resp::Result::Error(answer::error(5, "StreamDeleted", "StreamDeleted", &detail))
                }
                Err(status) => bad_request(status.message().to_string()),
            }
        }
        (Target::Stream(name), Some(_)) => match service.append_events(name, append.expected, append.events).await {
            Ok(outcome) => answer::batch(outcome, append.expected),
            Err(error) if error.code == ErrorCode::StreamDeleted => {
                let detail = shared::StreamDeleted { stream_identifier: Some(wire::identifier(&stream)) };
                pb::batch_append_resp::Result::Error(answer::error(5, "StreamDeleted", "StreamDeleted", &detail))
            }
            Err(error) => bad_request(error.message),
        },
    };
    pb::BatchAppendResp {
        correlation_id: Some(correlation),
        result: Some(result),
        stream_identifier: Some(wire::identifier(&stream)),
        expected_stream_position: None,
    }
}
