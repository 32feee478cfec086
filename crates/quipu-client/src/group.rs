//! Consumer groups from Rust: manage them ([`Client::create_group`] and
//! friends) and consume as a member ([`Client::consume_group`] returns a
//! [`GroupConsumer`]).
//!
//! A member receives events and answers each one: [`GroupConsumer::ack`]
//! when handled, [`GroupConsumer::nack`] otherwise. The server sends one
//! event of a stream at a time, so a member that answers in order sees
//! every stream in order; an event is delivered again (after a backoff)
//! until it is acknowledged, skipped or parked.

use quipu_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::event::{Event, Position};
use crate::{Error, wire};

/// Which events a group takes; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Streams of this category.
    pub category: Option<String>,
    /// Events of one of these types.
    pub event_types: Vec<String>,
    /// Events with this tag.
    pub tag: Option<String>,
    /// Streams whose name starts with this.
    pub stream_prefix: Option<String>,
    /// Only integration events (see [`Client::mark_integration_types`]).
    pub integration: bool,
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupStart {
    /// The first event of the log.
    #[default]
    Beginning,
    /// After the last event written now.
    End,
    /// This position (inclusive).
    Position(Position),
}

/// Retry and flow settings; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTuning {
    /// Retries before an event is parked (default 10).
    pub max_retries: Option<u32>,
    /// How long a delivery may stay unanswered, ms (default 30,000).
    pub message_timeout_ms: Option<u64>,
    /// Most events one member holds (default 100).
    pub max_in_flight: Option<u32>,
    /// First retry's backoff, ms (default 100); doubles per retry.
    pub backoff_base_ms: Option<u64>,
    /// Longest backoff, ms (default 10,000).
    pub backoff_max_ms: Option<u64>,
}

/// One member as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Events it holds now.
    pub in_flight: u64,
    /// Most it may hold.
    pub max_in_flight: u64,
    /// Events waiting for it.
    pub queued: u64,
    /// Deliveries so far.
    pub delivered: u64,
    /// Acknowledgements so far.
    pub acked: u64,
    /// Negative acknowledgements and timeouts so far.
    pub failed: u64,
}

/// A group's settings and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its filter.
    pub filter: GroupFilter,
    /// First position it delivers.
    pub start: Position,
    /// Retries before parking.
    pub max_retries: u32,
    /// Message timeout, ms.
    pub message_timeout_ms: u64,
    /// Most events one member holds.
    pub max_in_flight: u32,
    /// Every event before this position is done.
    pub checkpoint: Position,
    /// Position after the log's last event.
    pub head: Position,
    /// At most this many events are left to finish.
    pub lag: u64,
    /// Events out to members.
    pub in_flight: u64,
    /// Events given up on whose park record is being written.
    pub parking: u64,
    /// Events waiting for a retry.
    pub retrying: u64,
    /// Events read and not done.
    pub buffered: u64,
    /// Parked events no replay has asked for yet.
    pub parked: u64,
    /// Where parked events go.
    pub parked_stream: String,
    /// Where checkpoints go.
    pub checkpoint_stream: String,
    /// The members.
    pub members: Vec<MemberInfo>,
    /// In cluster mode, the node the group runs on (its members connect
    /// there); `None` for a server that stands alone.
    pub home: Option<String>,
    /// Whether it runs on the server asked; when not, the counts above
    /// are the home's last checkpoint only.
    pub running_here: bool,
}

/// What to do with an event a member could not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver it again after the backoff; parked when retries run out.
    Retry,
    /// Park it now.
    Park,
    /// Give up on it; it counts as done.
    Skip,
}

/// An event delivered to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    /// The event.
    pub event: Event,
    /// Failed attempts before this delivery.
    pub retries: u32,
}

/// A member of a group. [`GroupConsumer::leave`] leaves the group
/// cleanly: answers already given reach the server, and the events it
/// still holds go to other members without counting as failures. Dropping
/// it instead abandons the group: answers already given are sent, and the
/// events it holds count as failed attempts, as when the connection
/// breaks.
pub struct GroupConsumer {
    answers: Option<mpsc::UnboundedSender<pb::ConsumeRequest>>,
    /// Always present but while dropping.
    deliveries: Option<tonic::Streaming<pb::ConsumeResponse>>,
}

impl Drop for GroupConsumer {
    /// Abandons the group unless [`GroupConsumer::leave`] ran: the events
    /// the member holds count as failed attempts and go to other members.
    /// The call stays open (drained by a task) until the server has read
    /// the answers: cancelling it at once could read as a clean leave.
    fn drop(&mut self) {
        if self.answers.is_none() {
            return;
        }
        self.answer(pb::consume_request::Kind::Abandon(pb::Empty {}));
        self.answers = None;
        if let (Some(mut deliveries), Ok(runtime)) = (self.deliveries.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { while let Ok(Some(_)) = deliveries.message().await {} });
        }
    }
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// The next delivery; `None` when the group was deleted or the server
    /// stopped.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the connection broke (join again to go
    /// on), [`Error::Protocol`] for a message this client does not know.
    pub async fn next(&mut self) -> Option<Result<GroupEvent, Error>> {
        use pb::consume_response::Kind;
        loop {
            let deliveries = self.deliveries.as_mut()?;
            let response = match deliveries.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return None,
                Err(status) => return Some(Err(wire::error(status))),
            };
            return match response.kind {
                Some(Kind::Event(pb::GroupEvent { event: Some(event), retries })) => {
                    Some(wire::event(event).map(|event| GroupEvent { event, retries }))
                }
                Some(Kind::Joined(_)) => continue,
                _ => Some(Err(Error::Protocol("a group delivery with no event".into()))),
            };
        }
    }

    /// Acknowledges the event at `position`: it is done.
    pub fn ack(&self, position: Position) {
        self.ack_many(vec![position]);
    }

    /// Acknowledges several events at once.
    pub fn ack_many(&self, positions: Vec<Position>) {
        let positions = positions.into_iter().map(|position| position.0).collect();
        self.answer(pb::consume_request::Kind::Ack(pb::Ack { positions }));
    }

    fn answer(&self, kind: pb::consume_request::Kind) {
        if let Some(answers) = &self.answers {
            let _ = answers.send(pb::ConsumeRequest { kind: Some(kind) });
        }
    }

    /// Tells the group the event at `position` could not be handled.
    pub fn nack(&self, position: Position, action: NackAction, reason: impl Into<String>) {
        let action = match action {
            NackAction::Retry => pb::NackAction::Retry,
            NackAction::Park => pb::NackAction::Park,
            NackAction::Skip => pb::NackAction::Skip,
        };
        let nack = pb::Nack { positions: vec![position.0], action: action as i32, reason: reason.into() };
        self.answer(pb::consume_request::Kind::Nack(nack));
    }

    /// Leaves the group cleanly: ends the answers, then waits until the
    /// server has taken the member out (deliveries still on their way are
    /// not handled; the group gives them to other members).
    pub async fn leave(mut self) {
        self.answers = None;
        if let Some(deliveries) = self.deliveries.as_mut() {
            while let Ok(Some(_)) = deliveries.message().await {}
        }
    }
}

fn filter_message(filter: GroupFilter) -> pb::GroupFilter {
    pb::GroupFilter {
        category: filter.category,
        event_types: filter.event_types,
        tag: filter.tag,
        stream_prefix: filter.stream_prefix,
        integration: filter.integration,
    }
}

fn tuning_message(tuning: GroupTuning) -> pb::GroupTuning {
    pb::GroupTuning {
        max_retries: tuning.max_retries,
        message_timeout_ms: tuning.message_timeout_ms,
        max_in_flight: tuning.max_in_flight,
        backoff_base_ms: tuning.backoff_base_ms,
        backoff_max_ms: tuning.backoff_max_ms,
    }
}

fn group_info(info: pb::GroupInfo) -> GroupInfo {
    let filter = info.filter.unwrap_or_default();
    GroupInfo {
        name: info.name,
        filter: GroupFilter {
            category: filter.category,
            event_types: filter.event_types,
            tag: filter.tag,
            stream_prefix: filter.stream_prefix,
            integration: filter.integration,
        },
        start: Position(info.start),
        max_retries: info.max_retries,
        message_timeout_ms: info.message_timeout_ms,
        max_in_flight: info.max_in_flight,
        checkpoint: Position(info.checkpoint),
        head: Position(info.head),
        lag: info.lag,
        in_flight: info.in_flight,
        parking: info.parking,
        retrying: info.retrying,
        buffered: info.buffered,
        parked: info.parked,
        parked_stream: info.parked_stream,
        checkpoint_stream: info.checkpoint_stream,
        home: info.home,
        running_here: info.running_here,
        members: info
            .members
            .into_iter()
            .map(|m| MemberInfo {
                name: m.name,
                in_flight: m.in_flight,
                max_in_flight: m.max_in_flight,
                queued: m.queued,
                delivered: m.delivered,
                acked: m.acked,
                failed: m.failed,
            })
            .collect(),
    }
}

impl Client {
    /// Creates group `name` taking what `filter` selects from `start`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a bad setting;
    /// [`Error::Server`] with `AlreadyExists` for a name in use.
    pub async fn create_group(
        &self,
        name: &str,
        filter: GroupFilter,
        start: GroupStart,
        tuning: GroupTuning,
    ) -> Result<GroupInfo, Error> {
        use pb::create_group_request::Start;
        let start = match start {
            GroupStart::Beginning => Start::Beginning(pb::Empty {}),
            GroupStart::End => Start::End(pb::Empty {}),
            GroupStart::Position(position) => Start::Position(position.0),
        };
        let request = pb::CreateGroupRequest {
            name: name.to_string(),
            filter: Some(filter_message(filter)),
            start: Some(start),
            tuning: Some(tuning_message(tuning)),
        };
        let response = self
            .call_with(&self.groups, |mut grpc| {
                let request = request.clone();
                async move { grpc.create_group(request).await }
            })
            .await?;
        Ok(group_info(response))
    }

    /// Changes a group's retry and flow settings.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group, [`Error::InvalidArgument`]
    /// for a bad setting.
    pub async fn update_group(&self, name: &str, tuning: GroupTuning) -> Result<GroupInfo, Error> {
        let request = pb::UpdateGroupRequest { name: name.to_string(), tuning: Some(tuning_message(tuning)) };
        let response = self
            .call_with(&self.groups, |mut grpc| {
                let request = request.clone();
                async move { grpc.update_group(request).await }
            })
            .await?;
        Ok(group_info(response))
    }

    /// Deletes a group.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub async fn delete_group(&self, name: &str) -> Result<(), Error> {
        let request = pb::GroupName { name: name.to_string() };
        self.call_with(&self.groups, |mut grpc| {
            let request = request.clone();
            async move { grpc.delete_group(request).await }
        })
        .await?;
        Ok(())
    }

    /// Every group, by name.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, Error> {
        let response =
            self.call_with(&self.groups, |mut grpc| async move { grpc.list_groups(pb::Empty {}).await }).await?;
        Ok(response.groups.into_iter().map(group_info).collect())
    }

    /// One group's settings and state.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, Error> {
        let request = pb::GroupName { name: name.to_string() };
        let response = self
            .call_with(&self.groups, |mut grpc| {
                let request = request.clone();
                async move { grpc.get_group(request).await }
            })
            .await?;
        Ok(group_info(response))
    }

    /// Makes node `to` the home of group `name` in a cluster: the old home
    /// stops running it, `to` goes on from the last checkpoint (events out
    /// and not acknowledged are delivered again); the group as it is then.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group, [`Error::InvalidArgument`]
    /// for an empty node name or on a node that stands alone.
    pub async fn move_group(&self, name: &str, to: &str) -> Result<GroupInfo, Error> {
        let request = pb::MoveGroupRequest { name: name.to_string(), to: to.to_string() };
        let response = self
            .call_with(&self.groups, |mut grpc| {
                let request = request.clone();
                async move { grpc.move_group(request).await }
            })
            .await?;
        Ok(group_info(response))
    }

    /// Delivers again every event the group parked and did not replay yet;
    /// returns how many.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub async fn replay_parked(&self, name: &str) -> Result<u64, Error> {
        let request = pb::GroupName { name: name.to_string() };
        let response = self
            .call_with(&self.groups, |mut grpc| {
                let request = request.clone();
                async move { grpc.replay_parked(request).await }
            })
            .await?;
        Ok(response.scheduled)
    }

    /// Joins group `group` as member `member`, holding at most
    /// `max_in_flight` events (0: the group's maximum).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group; [`Error::Unavailable`]
    /// when the server cannot be reached.
    pub async fn consume_group(&self, group: &str, member: &str, max_in_flight: u32) -> Result<GroupConsumer, Error> {
        let (answers, receiver) = mpsc::unbounded_channel();
        let join = pb::Join { group: group.to_string(), member: member.to_string(), max_in_flight };
        answers
            .send(pb::ConsumeRequest { kind: Some(pb::consume_request::Kind::Join(join)) })
            .map_err(|_| Error::Protocol("the answer channel closed".into()))?;
        let requests = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|request| (request, receiver))
        });
        let mut deliveries =
            self.groups_grpc().consume(requests).await.map(tonic::Response::into_inner).map_err(wire::error)?;
        // The server answers `joined` first: wait for it, so an unknown
        // group is an error here, not on the first `next`.
        match deliveries.message().await {
            Ok(Some(pb::ConsumeResponse { kind: Some(pb::consume_response::Kind::Joined(_)) })) => {}
            Ok(_) => return Err(Error::Protocol("the server did not confirm the join".into())),
            Err(status) => return Err(wire::error(status)),
        }
        Ok(GroupConsumer { answers: Some(answers), deliveries: Some(deliveries) })
    }
}
