//! [`Client`]: a connection to a Quipu server over gRPC. Cheap to clone;
//! clones share the connection. Calls that fail because the server cannot
//! be reached are retried by its [`RetryPolicy`]; appends are retried with
//! the same event ids, so they are never written twice.

use std::future::Future;

use quipu_proto::v1 as pb;
use quipu_proto::v1::groups_client::GroupsClient;
use quipu_proto::v1::projections_client::ProjectionsClient;
use quipu_proto::v1::schemas_client::SchemasClient;
use quipu_proto::v1::snapshots_client::SnapshotsClient;
use quipu_proto::v1::streams_client::StreamsClient;
use tonic::transport::Channel;

use crate::transport::{Native, Transport};

use crate::append::Append;
use crate::delivery::{Delivery, DeliveryCodec};
use crate::event::{AppendResult, Event, ExpectedRevision, NewEvent, Position, Revision, StreamInfo};
use crate::retry::RetryPolicy;
use crate::subscription::Subscription;
use crate::{AsOf, Error, Filter, Start, wire};

/// Largest answer the client accepts (a read of many big events).
const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Addresses of the native transport start with this (see `transport`).
const NATIVE_SCHEME: &str = "quipu://";

/// The subscription call's path.
const SUBSCRIBE_PATH: &str = "/quipu.v1.Streams/Subscribe";

/// Events per page when a whole stream is loaded.
const LOAD_PAGE: u32 = 1000;

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Increasing revisions or positions.
    #[default]
    Forwards,
    /// Decreasing revisions or positions.
    Backwards,
}

impl Direction {
    fn message(self) -> i32 {
        match self {
            Direction::Forwards => pb::Direction::Forwards as i32,
            Direction::Backwards => pb::Direction::Backwards as i32,
        }
    }
}

/// One outcome of [`Client::append_batch`].
#[derive(Debug)]
pub enum BatchOutcome {
    /// Written (or already written by an earlier call with the same ids).
    Written(AppendResult),
    /// Refused: the error says why; nothing of this append was written.
    Refused(Error),
}

/// A connection to a Quipu server.
#[derive(Debug, Clone)]
pub struct Client {
    grpc: StreamsClient<Transport>,
    /// Subscription calls, whose messages [`DeliveryCodec`] decodes.
    subscriptions: tonic::client::Grpc<Transport>,
    /// The native transport, whose unary calls take a shorter way.
    native: Option<Native>,
    pub(crate) groups: GroupsClient<Transport>,
    pub(crate) projections: ProjectionsClient<Transport>,
    pub(crate) snapshots: SnapshotsClient<Transport>,
    pub(crate) schemas: SchemasClient<Transport>,
    retry: RetryPolicy,
    raw: bool,
    /// Reads answer only once the server holds this position.
    wait_for: Option<Position>,
    /// Reads answer only once the server caught up with its cluster.
    caught_up: bool,
}

impl Client {
    /// Connects to `address` (e.g. `http://127.0.0.1:2113`) with the
    /// default [`RetryPolicy`].
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for a malformed address,
    /// [`Error::Unavailable`] when nothing answers there.
    pub async fn connect(address: impl Into<String>) -> Result<Client, Error> {
        let address = address.into();
        let channel = match address.strip_prefix(NATIVE_SCHEME) {
            Some(host_port) => {
                let native = Native::connect(host_port.to_owned())
                    .await
                    .map_err(|e| Error::Unavailable(e.message().to_owned()))?;
                Transport::Native(native)
            }
            None => {
                let endpoint = Channel::from_shared(address.clone())
                    .map_err(|e| Error::InvalidAddress { address: address.clone(), reason: e.to_string() })?;
                let channel = endpoint
                    .connect()
                    .await
                    .map_err(|e| Error::Unavailable(format!("connecting to {address}: {e}")))?;
                Transport::Http2(channel)
            }
        };
        let native = match &channel {
            Transport::Native(native) => Some(native.clone()),
            Transport::Http2(_) => None,
        };
        let grpc = StreamsClient::new(channel.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let subscriptions = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MESSAGE_BYTES_MAX);
        let groups = GroupsClient::new(channel.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let projections = ProjectionsClient::new(channel.clone());
        let snapshots = SnapshotsClient::new(channel.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let schemas = SchemasClient::new(channel);
        Ok(Client {
            grpc,
            subscriptions,
            native,
            groups,
            projections,
            snapshots,
            schemas,
            retry: RetryPolicy::default(),
            raw: false,
            wait_for: None,
            caught_up: false,
        })
    }

    /// The same client reading events as written (`true`) instead of at
    /// their types' current versions, which is what reads and
    /// subscriptions return by default when upcasters are declared.
    #[must_use]
    pub fn raw_reads(mut self, raw: bool) -> Client {
        self.raw = raw;
        self
    }

    /// The same client, whose reads (of streams, `$all` and filters) are
    /// answered only once the server holds `position`: read your writes
    /// on any node of a cluster, by passing an append's last position
    /// (positions agree on every node). A read waits up to 10 s on the
    /// server, then fails [`Error::Unavailable`] (`position_not_reached`).
    #[must_use]
    pub fn reading_after(mut self, position: Position) -> Client {
        self.wait_for = Some(position);
        self
    }

    /// The same client, whose reads are answered only once the server holds
    /// every append acknowledged on any node of its cluster before each
    /// read (it applies the cluster's log to its end first; a server alone
    /// answers at once). Costs a look at the log's end per read.
    #[must_use]
    pub fn reading_caught_up(mut self) -> Client {
        self.caught_up = true;
        self
    }

    /// The same client with another retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// Runs `call` on the `Streams` service, repeating it while the
    /// server is unreachable.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut(StreamsClient<Transport>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_with(&self.grpc, call).await
    }

    /// The `Groups` service, for calls that are not repeated.
    pub(crate) fn groups_grpc(&self) -> GroupsClient<Transport> {
        self.groups.clone()
    }

    /// Runs `call` on `service` (one of this client's gRPC services),
    /// repeating it while the server is unreachable.
    pub(crate) async fn call_with<S: Clone, T, F, Fut>(&self, service: &S, mut call: F) -> Result<T, Error>
    where
        F: FnMut(S) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.retrying(|| {
            let call = call(service.clone());
            async move { call.await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Runs the unary `Streams` call `path` with `request`: over the
    /// native transport the short way (one frame each way, no HTTP
    /// request built), otherwise with `grpc`; repeated while the server is
    /// unreachable.
    async fn unary<Q, A, F, Fut>(&self, path: &'static str, request: Q, mut grpc: F) -> Result<A, Error>
    where
        Q: prost::Message + Clone,
        A: prost::Message + Default,
        F: FnMut(StreamsClient<Transport>, Q) -> Fut,
        Fut: Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        match &self.native {
            Some(native) => self.retrying(|| native.unary(path, &request, MESSAGE_BYTES_MAX)).await,
            None => self.call(|client| grpc(client, request.clone())).await,
        }
    }

    /// Runs `call` until it succeeds, fails for good or runs out of
    /// attempts.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(answer) => return Ok(answer),
                Err(status) => {
                    let error = wire::error(status);
                    if !error.is_transient() || attempt >= self.retry.attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Appends `events` to `stream` if it is at `expected`. A repeat with
    /// the same events (same ids) writes nothing and returns the original
    /// result with `already_written`.
    ///
    /// # Errors
    /// [`Error::Conflict`] with the actual revision when `expected` does
    /// not hold; [`Error::InvalidArgument`] for a bad name, id, tag or an
    /// oversize append; [`Error::Unavailable`] after the retries.
    pub async fn append(
        &self,
        stream: impl Into<String>,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        self.append_atomic(&Append::new().stream(stream, expected, events)).await
    }

    /// Appends to several streams atomically, with their expected
    /// revisions and the optional condition.
    ///
    /// # Errors
    /// As [`Client::append`].
    pub async fn append_atomic(&self, append: &Append) -> Result<AppendResult, Error> {
        let response = self.unary("/quipu.v1.Streams/Append", append.to_message(), |mut grpc, request| async move {
            grpc.append(request).await
        });
        Ok(wire::append_result(response.await?))
    }

    /// Sends many independent appends in one call for throughput; each is
    /// its own transaction and they share the server's group commits.
    /// Outcomes come back in order.
    ///
    /// # Errors
    /// [`Error::Unavailable`] (after retries, which resend every append
    /// with the same ids) or another error of the call as a whole.
    pub async fn append_batch(&self, appends: &[Append]) -> Result<Vec<BatchOutcome>, Error> {
        let requests: Vec<pb::AppendRequest> = appends.iter().map(Append::to_message).collect();
        let response = self
            .call(|mut grpc| {
                let requests = requests.clone();
                async move { grpc.append_batch(futures_util::stream::iter(requests)).await }
            })
            .await?;
        if response.outcomes.len() != appends.len() {
            return Err(Error::Protocol(format!("{} outcomes for {} appends", response.outcomes.len(), appends.len())));
        }
        response.outcomes.into_iter().map(batch_outcome).collect()
    }

    /// Up to `limit` events of `stream` from revision `from` (inclusive;
    /// `None`: the start forwards, the end backwards). `limit` 0 means 100.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the stream has no events.
    pub async fn read_stream(
        &self,
        stream: &str,
        from: Option<Revision>,
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        self.read_stream_as_of(stream, from, direction, limit, None).await
    }

    /// As [`Client::read_stream`], as the stream stood at `as_of` (`None`:
    /// now): forwards up to the moment, backwards from it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the stream had no events then.
    pub async fn read_stream_as_of(
        &self,
        stream: &str,
        from: Option<Revision>,
        direction: Direction,
        limit: u32,
        as_of: Option<AsOf>,
    ) -> Result<Vec<Event>, Error> {
        let (to_revision, to_position, as_of_us) = wire::as_of(as_of);
        let request = pb::ReadStreamRequest {
            stream: stream.to_string(),
            from_revision: from.map(|revision| revision.0),
            direction: direction.message(),
            limit,
            to_revision,
            to_position,
            as_of_us,
            raw: self.raw,
            wait_for_position: self.wait_for.map(|position| position.0),
            caught_up: self.caught_up,
        };
        let response = self.unary("/quipu.v1.Streams/ReadStream", request, |mut grpc, request| async move {
            grpc.read_stream(request).await
        });
        wire::events(response.await?)
    }

    /// Every event of `stream` in order; empty when it does not exist.
    ///
    /// # Errors
    /// As [`Client::read_stream`], except that a missing stream is empty.
    pub async fn load_stream(&self, stream: &str) -> Result<Vec<Event>, Error> {
        self.load_stream_as_of(stream, None).await
    }

    /// Every event `stream` had at `as_of` (`None`: now), in order; empty
    /// when it had none.
    ///
    /// # Errors
    /// As [`Client::read_stream_as_of`], except that a missing stream is
    /// empty.
    pub async fn load_stream_as_of(&self, stream: &str, as_of: Option<AsOf>) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        loop {
            let from = events.last().map(|e: &Event| e.revision.next());
            let page = match self.read_stream_as_of(stream, from, Direction::Forwards, LOAD_PAGE, as_of).await {
                Err(Error::NotFound(_)) => return Ok(events),
                page => page?,
            };
            let full = page.len() == LOAD_PAGE as usize;
            events.extend(page);
            if !full {
                return Ok(events);
            }
        }
    }

    /// Up to `limit` events of `$all` from position `from` (inclusive;
    /// `None`: the start forwards, the end backwards).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a limit above the server's maximum.
    pub async fn read_all(
        &self,
        from: Option<Position>,
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        self.read_all_as_of(from, direction, limit, None).await
    }

    /// As [`Client::read_all`], as `$all` stood at `as_of` (`None`: now).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for [`AsOf::Revision`] (streams only) or
    /// a limit above the server's maximum.
    pub async fn read_all_as_of(
        &self,
        from: Option<Position>,
        direction: Direction,
        limit: u32,
        as_of: Option<AsOf>,
    ) -> Result<Vec<Event>, Error> {
        let (to_position, as_of_us) = wire::position_as_of(as_of)?;
        let request = pb::ReadAllRequest {
            from_position: from.map(|position| position.0),
            direction: direction.message(),
            limit,
            to_position,
            as_of_us,
            raw: self.raw,
            wait_for_position: self.wait_for.map(|position| position.0),
            caught_up: self.caught_up,
        };
        let response = self.call(|mut grpc| async move { grpc.read_all(request).await });
        wire::events(response.await?)
    }

    /// Up to `limit` events of a category, event type or tag, by position.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a stream filter (use
    /// [`Client::read_stream`]) or a bad name.
    pub async fn read_filtered(
        &self,
        filter: Filter,
        from: Option<Position>,
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        self.read_filtered_as_of(filter, from, direction, limit, None).await
    }

    /// As [`Client::read_filtered`], as things stood at `as_of` (`None`:
    /// now).
    ///
    /// # Errors
    /// As [`Client::read_filtered`]; [`Error::InvalidArgument`] for
    /// [`AsOf::Revision`].
    pub async fn read_filtered_as_of(
        &self,
        filter: Filter,
        from: Option<Position>,
        direction: Direction,
        limit: u32,
        as_of: Option<AsOf>,
    ) -> Result<Vec<Event>, Error> {
        let (to_position, as_of_us) = wire::position_as_of(as_of)?;
        let request = pb::ReadFilteredRequest {
            filter: Some(wire::filter(filter)),
            from_position: from.map(|position| position.0),
            direction: direction.message(),
            limit,
            to_position,
            as_of_us,
            raw: self.raw,
            wait_for_position: self.wait_for.map(|position| position.0),
            caught_up: self.caught_up,
        };
        let response = self.call(|mut grpc| {
            let request = request.clone();
            async move { grpc.read_filtered(request).await }
        });
        wire::events(response.await?)
    }

    /// The event types marked as integration events, sorted.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_integration_types(&self) -> Result<Vec<String>, Error> {
        let response = self.call(|mut grpc| async move { grpc.list_integration_types(pb::Empty {}).await }).await?;
        Ok(response.types)
    }

    /// Marks `types` as integration events (those marked already stay);
    /// returns every marked type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming an invalid type; nothing is
    /// marked then.
    pub async fn mark_integration_types(&self, types: &[String]) -> Result<Vec<String>, Error> {
        let request = pb::IntegrationTypes { types: types.to_vec() };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.mark_integration_types(request).await }
            })
            .await?;
        Ok(response.types)
    }

    /// Unmarks `types`; returns every type still marked.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming a type that is not marked; nothing is
    /// unmarked then.
    pub async fn unmark_integration_types(&self, types: &[String]) -> Result<Vec<String>, Error> {
        let request = pb::IntegrationTypes { types: types.to_vec() };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.unmark_integration_types(request).await }
            })
            .await?;
        Ok(response.types)
    }

    /// Whether `stream` exists and its last revision.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name.
    pub async fn stream_info(&self, stream: &str) -> Result<StreamInfo, Error> {
        let request = pb::StreamInfoRequest { stream: stream.to_string() };
        let response = self
            .call(|mut grpc| {
                let request = request.clone();
                async move { grpc.stream_info(request).await }
            })
            .await?;
        Ok(StreamInfo { stream: response.stream, last_revision: response.last_revision.map(Revision) })
    }

    /// Follows `filter` (everything when `None`) from `start`: catch-up,
    /// then live, reconnecting and resuming while the server is away. See
    /// [`Subscription`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad filter or start (a revision is
    /// a start only for a stream filter).
    pub async fn subscribe(&self, filter: Option<Filter>, start: Start) -> Result<Subscription, Error> {
        let start = match (&filter, start) {
            // A stream resumes by revision: pin "the end" down to one now.
            (Some(Filter::Stream(stream)), Start::End) => {
                Start::Revision(self.stream_info(stream).await?.last_revision.map_or(Revision(0), Revision::next))
            }
            (_, start) => start,
        };
        Subscription::open(self.clone(), self.retry, filter, start).await
    }

    /// Opens a subscription's server stream; with `retry`, by the retry
    /// policy, else in one attempt (the subscription retries itself).
    pub(crate) async fn open_subscription(
        &self,
        filter: Option<Filter>,
        start: Start,
        retry: bool,
    ) -> Result<tonic::Streaming<Delivery>, Error> {
        let request = pb::SubscribeRequest {
            filter: filter.map(wire::filter),
            start: Some(wire::start(start)),
            raw: self.raw,
            batched: true,
            binary_ids: true,
        };
        let open = || {
            let (mut grpc, request) = (self.subscriptions.clone(), request.clone());
            async move {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("the connection failed: {e}")))?;
                let path = http::uri::PathAndQuery::from_static(SUBSCRIBE_PATH);
                let mut request = tonic::Request::new(request);
                request.extensions_mut().insert(tonic::GrpcMethod::new("quipu.v1.Streams", "Subscribe"));
                grpc.server_streaming(request, path, DeliveryCodec).await.map(tonic::Response::into_inner)
            }
        };
        if !retry {
            return open().await.map_err(wire::error);
        }
        self.retrying(open).await
    }
}

fn batch_outcome(outcome: pb::AppendOutcome) -> Result<BatchOutcome, Error> {
    use pb::append_outcome::Result as R;
    match outcome.result {
        Some(R::Written(response)) => Ok(BatchOutcome::Written(wire::append_result(response))),
        Some(R::Conflict(conflict)) => Ok(BatchOutcome::Refused(Error::Conflict {
            message: "an expected revision or the condition did not hold; nothing was written".into(),
            conflict: wire::conflict(conflict),
        })),
        Some(R::Error(error)) => {
            let status = tonic::Status::new(tonic::Code::from_i32(error.code), error.message);
            Ok(BatchOutcome::Refused(wire::error(status)))
        }
        None => Err(Error::Protocol("a batch outcome with no result".into())),
    }
}
