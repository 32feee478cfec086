//! `event_store.client.streams.Streams` over the store: finite reads of a
//! stream or of `$all` (with stream-name and event-type filters), appends
//! (`Append` and the multiplexed `BatchAppend`), deletes and tombstones.
//! Catch-up subscriptions are in [`super::subscription`].

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use quipu_core::{
    AppendOutcome, AppendRequest, Direction, ExpectedRevision, ProposedEvent, RecordedEvent, StreamName, StreamWrite,
};
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::streams as pb;
use tonic::{Request, Response, Status, Streaming};

use super::filter::Filter;
use super::{metadata, subscription, wire};
use quipu_node::feed::Source;
use quipu_node::lifecycle::Lifecycle;
use quipu_node::metrics::Metrics;
use quipu_node::submission::{Admission, submit};
use quipu_node::{ApiError, ErrorCode, ReadRequest, Reads, Shape};

/// Events read from the store per step of a read.
const PAGE: usize = 1_000;

/// The Streams service.
pub struct StreamsService {
    /// The store.
    pub store: Arc<quipu_core::Store>,
    /// Stream metadata, deletes, tombstones.
    pub lifecycle: Arc<Lifecycle>,
    /// The one read path (lifecycle, upcasting), for reads and
    /// subscriptions.
    pub reads: Reads,
    /// What appends must pass.
    pub admission: Arc<Admission>,
    /// Append counters.
    pub metrics: Arc<Metrics>,
}

pub(super) type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResp, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::BatchAppendResp, Status>> + Send>>;

/// What a read walks: a stream by revision, or `$all` by position.
#[derive(Clone)]
enum Walk {
    Stream(StreamName),
    All(Option<Arc<Filter>>),
}

/// Where a read stands between pages.
struct Cursor {
    walk: Walk,
    reads: Reads,
    direction: Direction,
    /// Next revision or position to read; `None`: from the end (or start).
    from: Option<u64>,
    remaining: u64,
    structured: bool,
    done: bool,
}

impl Cursor {
    /// The next page of answers; `None` when the read is over.
    async fn next_page(mut self) -> Option<(Vec<Result<pb::ReadResp, Status>>, Cursor)> {
        if self.done || self.remaining == 0 {
            return None;
        }
        let source = match &self.walk {
            Walk::Stream(stream) => Source::Stream(stream.clone()),
            Walk::All(_) => Source::All,
        };
        let request = ReadRequest {
            source,
            from: self.from,
            direction: self.direction,
            limit: PAGE,
            as_of: None,
            shape: Shape::Current,
            wait_for: None,
            caught_up: false,
        };
        let page = self.reads.read(request).await;
        let events = match page {
            Ok(events) => events,
            Err(error) if error.code == ErrorCode::StreamNotFound => {
                self.done = true;
                let Walk::Stream(stream) = &self.walk else { return None };
                let missing =
                    pb::read_resp::StreamNotFound { stream_identifier: Some(wire::identifier(stream.as_str())) };
                let answer = pb::ReadResp { content: Some(pb::read_resp::Content::StreamNotFound(missing)) };
                return Some((vec![Ok(answer)], self));
            }
            Err(error) => {
                self.done = true;
                let stream = match &self.walk {
                    Walk::Stream(stream) => stream.as_str().to_string(),
                    Walk::All(_) => String::new(),
                };
                return Some((vec![Err(wire::status(&error, &stream))], self));
            }
        };
        self.done = events.len() < PAGE;
        let key = |e: &RecordedEvent| match self.walk {
            Walk::Stream(_) => e.revision.0,
            Walk::All(_) => e.position.0,
        };
        match (events.last(), self.direction) {
            (Some(last), Direction::Forwards) => self.from = Some(key(last) + 1),
            (Some(last), Direction::Backwards) => match key(last).checked_sub(1) {
                Some(next) => self.from = Some(next),
                None => self.done = true,
            },
            (None, _) => self.done = true,
        }
        let mut answers = Vec::new();
        for event in events {
            if self.remaining == 0 {
                break;
            }
            if let Walk::All(Some(filter)) = &self.walk
                && !filter.accepts(&event)
            {
                continue;
            }
            self.remaining -= 1;
            answers.push(Ok(wire::read_event(event, self.structured)));
        }
        Some((answers, self))
    }
}

impl StreamsService {
    /// The read a request asks for.
    fn cursor(&self, options: pb::read_req::Options) -> Result<Cursor, Status> {
        use pb::read_req::options::{AllOptions, CountOption, FilterOption, StreamOption, all_options, stream_options};
        let structured = structured(options.uuid_option)?;
        let remaining = match options.count_option {
            Some(CountOption::Count(count)) => count,
            Some(CountOption::Subscription(_)) | None => {
                return Err(Status::invalid_argument("a read needs a count or a subscription"));
            }
        };
        let backwards = options.read_direction == pb::read_req::options::ReadDirection::Backwards as i32;
        let direction = if backwards { Direction::Backwards } else { Direction::Forwards };
        let filter = match options.filter_option {
            Some(FilterOption::Filter(filter)) => Some(Filter::new(&filter)?),
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let (walk, from, empty) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                if filter.is_some() {
                    return Err(Status::invalid_argument("a stream read takes no filter"));
                }
                let name = wire::stream_name(stream.stream_identifier.as_ref())?;
                let (from, empty) = match stream.revision_option {
                    Some(stream_options::RevisionOption::Revision(revision)) => (Some(revision), false),
                    Some(stream_options::RevisionOption::Start(_)) | None => (backwards.then_some(0), false),
                    Some(stream_options::RevisionOption::End(_)) => (None, !backwards),
                };
                (Walk::Stream(name), from, empty)
            }
            Some(StreamOption::All(AllOptions { all_option })) => {
                let (from, empty) = match all_option {
                    Some(all_options::AllOption::Position(position)) => {
                        let quipu = wire::quipu_position(position.commit_position);
                        // Backwards from a position starts before it.
                        match (backwards, position.commit_position) {
                            (true, 0 | 1) => (None, true),
                            (true, _) => (Some(quipu - 1), false),
                            (false, _) => (Some(quipu), false),
                        }
                    }
                    Some(all_options::AllOption::Start(_)) | None => (backwards.then_some(0), backwards),
                    Some(all_options::AllOption::End(_)) => (None, !backwards),
                };
                (Walk::All(filter.map(Arc::new)), from, empty)
            }
            None => return Err(Status::invalid_argument("a read names a stream or $all")),
        };
        Ok(Cursor {
            walk,
            reads: self.reads.clone(),
            direction,
            from,
            remaining: if empty { 0 } else { remaining },
            structured,
            done: false,
        })
    }

    /// A catch-up subscription.
    fn subscribe(&self, options: pb::read_req::Options) -> Result<ReadStream, Status> {
        use pb::read_req::options::{AllOptions, FilterOption, StreamOption, all_options, stream_options};
        let structured = structured(options.uuid_option)?;
        if options.read_direction == pb::read_req::options::ReadDirection::Backwards as i32 {
            return Err(Status::invalid_argument("a subscription reads forwards"));
        }
        let (filter, checkpoint_every) = match &options.filter_option {
            Some(FilterOption::Filter(filter)) => {
                (Some(Arc::new(Filter::new(filter)?)), Some(subscription::checkpoint_every(filter)?))
            }
            Some(FilterOption::NoFilter(_)) | None => (None, None),
        };
        let (source, start) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                if filter.is_some() {
                    return Err(Status::invalid_argument("a stream subscription takes no filter"));
                }
                let name = wire::stream_name(stream.stream_identifier.as_ref())?;
                if self.lifecycle.metadata(name.as_str()).tombstoned {
                    return Err(wire::deleted(name.as_str()));
                }
                let start = match stream.revision_option {
                    Some(stream_options::RevisionOption::Revision(revision)) => {
                        subscription::stream_start(Some(revision), false)
                    }
                    Some(stream_options::RevisionOption::Start(_)) | None => subscription::stream_start(None, false),
                    Some(stream_options::RevisionOption::End(_)) => subscription::stream_start(None, true),
                };
                (Source::Stream(name), start)
            }
            Some(StreamOption::All(AllOptions { all_option })) => {
                let start = match all_option {
                    Some(all_options::AllOption::Position(position)) => {
                        subscription::all_start(Some(position.commit_position), false)
                    }
                    Some(all_options::AllOption::Start(_)) | None => subscription::all_start(None, false),
                    Some(all_options::AllOption::End(_)) => subscription::all_start(None, true),
                };
                (Source::All, start)
            }
            None => return Err(Status::invalid_argument("a subscription names a stream or $all")),
        };
        let stream = match &source {
            Source::Stream(name) => name.as_str().to_string(),
            _ => String::new(),
        };
        let feed = self.reads.subscribe(source, start, Shape::Current).map_err(|e| wire::status(&e, &stream))?;
        let plan = subscription::Plan { filter, checkpoint_every, structured };
        Ok(subscription::answers(feed, plan))
    }

    /// Appends `events` to `stream` with `expected`.
    pub(super) async fn append_events(
        &self,
        stream: StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendOutcome, ApiError> {
        let request = AppendRequest { writes: vec![StreamWrite { stream, expected, events }], condition: None };
        submit(&self.store, &self.metrics, &self.admission, request).await
    }

    /// Checks `expected` against `stream` for a delete; the clients' error
    /// when it does not hold.
    fn check_delete(&self, stream: &StreamName, expected: ExpectedRevision) -> Result<quipu_core::Revision, Status> {
        let actual =
            self.store.stream_info(stream).map_err(|e| wire::status(&e.into(), stream.as_str()))?.last_revision;
        if let Some(last) = actual.filter(|_| expected.is_met_by(actual)) {
            return Ok(last);
        }
        let actual = actual.map_or(-1, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let expected = wire::expected_number(expected);
        let mut status = Status::failed_precondition(format!(
            "Delete failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {expected}, Actual version: {actual}"
        ));
        wire::trailer(&mut status, "exception", "wrong-expected-version");
        wire::trailer(&mut status, "stream-name", stream.as_str());
        wire::trailer(&mut status, "expected-version", &expected.to_string());
        wire::trailer(&mut status, "actual-version", &actual.to_string());
        Err(status)
    }
}

#[tonic::async_trait]
impl pb::streams_server::Streams for StreamsService {
    type ReadStream = ReadStream;
    type BatchAppendStream = BatchStream;

    async fn read(&self, request: Request<pb::ReadReq>) -> Result<Response<ReadStream>, Status> {
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("a read has options"))?;
        if matches!(options.count_option, Some(pb::read_req::options::CountOption::Subscription(_))) {
            return Ok(Response::new(self.subscribe(options)?));
        }
        if let Some(pb::read_req::options::StreamOption::Stream(stream)) = &options.stream_option
            && let Some(target) = metadata::target(stream.stream_identifier.as_ref())
        {
            let answers = metadata::read(&self.lifecycle, &target, structured(options.uuid_option)?);
            return Ok(Response::new(Box::pin(futures_util::stream::iter(answers))));
        }
        let cursor = self.cursor(options)?;
        let answers = futures_util::stream::unfold(cursor, Cursor::next_page).flat_map(futures_util::stream::iter);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn append(&self, request: Request<Streaming<pb::AppendReq>>) -> Result<Response<pb::AppendResp>, Status> {
        use pb::append_req::Content;
        use pb::append_req::options::ExpectedStreamRevision as E;
        let mut messages = request.into_inner();
        let Some(Content::Options(options)) = messages.message().await?.and_then(|m| m.content) else {
            return Err(Status::invalid_argument("an append starts with its options"));
        };
        let expected = expected_revision!(options.expected_stream_revision, E);
        if let Some(target) = metadata::target(options.stream_identifier.as_ref()) {
            let mut last = None;
            while let Some(message) = messages.message().await? {
                if let Some(Content::ProposedMessage(m)) = message.content {
                    last = Some(m.data);
                }
            }
            let data = last.ok_or_else(|| Status::invalid_argument("a metadata append carries the metadata"))?;
            let written = metadata::write(&self.lifecycle, &target, expected, &data).await?;
            return Ok(Response::new(metadata::append_answer(written, expected)));
        }
        let stream = wire::stream_name(options.stream_identifier.as_ref())?;
        let mut events = Vec::new();
        while let Some(message) = messages.message().await? {
            let Some(Content::ProposedMessage(m)) = message.content else {
                return Err(Status::invalid_argument("after the options, an append sends proposed messages only"));
            };
            events.push(wire::proposed_event(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data)?);
        }
        if events.is_empty() {
            return Err(Status::invalid_argument("an append without events writes nothing; send at least one"));
        }
        let outcome = self.append_events(stream.clone(), expected, events).await;
        Ok(Response::new(super::answer::append(outcome.map_err(|e| wire::status(&e, stream.as_str()))?, expected)))
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<pb::BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        let (answers, receiver) = tokio::sync::mpsc::channel(64);
        let service = StreamsService {
            store: Arc::clone(&self.store),
            lifecycle: Arc::clone(&self.lifecycle),
            reads: self.reads.clone(),
            admission: Arc::clone(&self.admission),
            metrics: Arc::clone(&self.metrics),
        };
        tokio::spawn(super::batch::run(Arc::new(service), request.into_inner(), answers));
        Ok(Response::new(Box::pin(tokio_stream_from(receiver))))
    }

    async fn delete(&self, request: Request<pb::DeleteReq>) -> Result<Response<pb::DeleteResp>, Status> {
        use pb::delete_req::options::ExpectedStreamRevision as E;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("a delete has options"))?;
        let stream = wire::stream_name(options.stream_identifier.as_ref())?;
        let expected = expected_revision!(options.expected_stream_revision, E);
        if self.lifecycle.metadata(stream.as_str()).tombstoned {
            return Err(wire::deleted(stream.as_str()));
        }
        // The delete covers the revisions checked: an append landing in
        // between stays, as if it came after.
        let last = self.check_delete(&stream, expected)?;
        self.lifecycle.delete_through(stream.as_str(), last).await.map_err(|e| wire::status(&e, stream.as_str()))?;
        let none = pb::delete_resp::PositionOption::NoPosition(shared::Empty {});
        Ok(Response::new(pb::DeleteResp { position_option: Some(none) }))
    }

    async fn tombstone(&self, request: Request<pb::TombstoneReq>) -> Result<Response<pb::TombstoneResp>, Status> {
        use pb::tombstone_req::options::ExpectedStreamRevision as E;
        let options =
            request.into_inner().options.ok_or_else(|| Status::invalid_argument("a tombstone has options"))?;
        let stream = wire::stream_name(options.stream_identifier.as_ref())?;
        let expected = expected_revision!(options.expected_stream_revision, E);
        if self.lifecycle.metadata(stream.as_str()).tombstoned {
            return Err(wire::deleted(stream.as_str()));
        }
        if expected != ExpectedRevision::Any || self.store.stream_info(&stream).is_ok_and(|i| i.last_revision.is_some())
        {
            self.check_delete(&stream, expected)?;
        }
        self.lifecycle.tombstone(stream.as_str()).await.map_err(|e| wire::status(&e, stream.as_str()))?;
        let none = pb::tombstone_resp::PositionOption::NoPosition(shared::Empty {});
        Ok(Response::new(pb::TombstoneResp { position_option: Some(none) }))
    }
}

/// The expected revision in a request's options: each request type has
/// its own oneof enum `E` of the same four cases.
macro_rules! expected_revision {
    ($option:expr, $kind:ident) => {
        match $option {
            Some($kind::Revision(revision)) => ExpectedRevision::Exact(quipu_core::Revision(revision)),
            Some($kind::NoStream(_)) => ExpectedRevision::NoStream,
            Some($kind::StreamExists(_)) => ExpectedRevision::Exists,
            Some($kind::Any(_)) | None => ExpectedRevision::Any,
        }
    };
}
use expected_revision;

/// Whether ids go out structured: the read's required `uuid_option`.
fn structured(option: Option<pb::read_req::options::UuidOption>) -> Result<bool, Status> {
    match option.and_then(|u| u.content) {
        Some(pb::read_req::options::uuid_option::Content::Structured(_)) => Ok(true),
        Some(pb::read_req::options::uuid_option::Content::String(_)) => Ok(false),
        None => Err(Status::invalid_argument("'uuidOption' is a required argument")),
    }
}

/// The receiving end of a channel as a stream.
pub(super) fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |context| receiver.poll_recv(context))
}
