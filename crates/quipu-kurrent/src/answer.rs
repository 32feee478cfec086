//! The answers to appends: success with the stream's revision and the
//! position, or the expected revision that did not hold, in `Append`'s
//! form and in `BatchAppend`'s.

use quipu_core::{AppendOutcome, AppendResult, ExpectedRevision};
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::streams as pb;

use super::wire;

/// `Append`'s answer to `outcome`.
#[must_use]
pub fn append(outcome: AppendOutcome, expected: ExpectedRevision) -> pb::AppendResp {
    use pb::append_resp::{Result as R, Success, success, wrong_expected_version as w};
    let empty = shared::Empty {};
    let result = match outcome {
        AppendOutcome::Written(result) | AppendOutcome::AlreadyWritten(result) => {
            let (revision, commit) = written(&result);
            R::Success(Success {
                current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(revision)),
                position_option: Some(success::PositionOption::Position(pb::append_resp::Position {
                    commit_position: commit,
                    prepare_position: commit,
                })),
            })
        }
        AppendOutcome::Conflict(conflict) => {
            let actual = conflict.streams.first().and_then(|s| s.actual).map(|r| r.0);
            let (current, current_old) = match actual {
                Some(revision) => (
                    w::CurrentRevisionOption::CurrentRevision(revision),
                    w::CurrentRevisionOption2060::CurrentRevision2060(revision),
                ),
                None => (
                    w::CurrentRevisionOption::CurrentNoStream(empty),
                    w::CurrentRevisionOption2060::NoStream2060(empty),
                ),
            };
            let (wanted, wanted_old) = match expected {
                ExpectedRevision::Exact(r) => (
                    w::ExpectedRevisionOption::ExpectedRevision(r.0),
                    w::ExpectedRevisionOption2060::ExpectedRevision2060(r.0),
                ),
                ExpectedRevision::NoStream => (
                    w::ExpectedRevisionOption::ExpectedNoStream(empty),
                    w::ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
                ),
                ExpectedRevision::Exists => (
                    w::ExpectedRevisionOption::ExpectedStreamExists(empty),
                    w::ExpectedRevisionOption2060::StreamExists2060(empty),
                ),
                ExpectedRevision::Any => {
                    (w::ExpectedRevisionOption::ExpectedAny(empty), w::ExpectedRevisionOption2060::Any2060(empty))
                }
            };
            R::WrongExpectedVersion(pb::append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(current_old),
                expected_revision_option_20_6_0: Some(wanted_old),
                current_revision_option: Some(current),
                expected_revision_option: Some(wanted),
            })
        }
    };
    pb::AppendResp { result: Some(result) }
}

/// `BatchAppend`'s result for `outcome`.
#[must_use]
pub fn batch(outcome: AppendOutcome, expected: ExpectedRevision) -> pb::batch_append_resp::Result {
    use pb::batch_append_resp::{Result as R, Success, success};
    match outcome {
        AppendOutcome::Written(result) | AppendOutcome::AlreadyWritten(result) => {
            let (revision, commit) = written(&result);
            R::Success(Success {
                current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(revision)),
                position_option: Some(success::PositionOption::Position(shared::AllStreamPosition {
                    commit_position: commit,
                    prepare_position: commit,
                })),
            })
        }
        AppendOutcome::Conflict(conflict) => {
            use shared::wrong_expected_version::{CurrentStreamRevisionOption as C, ExpectedStreamPositionOption as E};
            let actual = conflict.streams.first().and_then(|s| s.actual).map(|r| r.0);
            let details = shared::WrongExpectedVersion {
                current_stream_revision_option: Some(actual.map_or(C::CurrentNoStream(()), C::CurrentStreamRevision)),
                expected_stream_position_option: Some(match expected {
                    ExpectedRevision::Exact(r) => E::ExpectedStreamPosition(r.0),
                    ExpectedRevision::NoStream => E::ExpectedNoStream(()),
                    ExpectedRevision::Exists => E::ExpectedStreamExists(()),
                    ExpectedRevision::Any => E::ExpectedAny(()),
                }),
            };
            R::Error(error(6, "WrongExpectedVersion", "WrongExpectedVersion", &details))
        }
    }
}

/// A batch append's error: `code` of google.rpc.Code, and one detail of
/// type `event_store.client.<kind>`.
#[must_use]
pub fn error(code: i32, message: &str, kind: &str, detail: &impl prost::Message) -> quipu_proto::google::rpc::Status {
    quipu_proto::google::rpc::Status {
        code,
        message: message.to_string(),
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/event_store.client.{kind}"),
            value: detail.encode_to_vec(),
        }),
    }
}

/// The stream's last revision and the commit position of the last event.
fn written(result: &AppendResult) -> (u64, u64) {
    let revision = result.streams.first().map_or(0, |s| s.last_revision.0);
    (revision, wire::commit_position(result.last_position.0))
}
