//! The gRPC service `quipu.v1.Groups` (see `proto/quipu/v1/groups.proto`)
//! over the server's [`Groups`].

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use quipu_core::Position;
use quipu_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use crate::wire::{recorded_event, status};
use quipu_node::group::dispatcher::NackAction;
use quipu_node::group::settings::{Filter, StartFrom, TuningRequest};
use quipu_node::group::{GroupInfo, Groups, Membership};
use quipu_node::{ApiError, ErrorCode};

/// The service over the server's groups.
pub struct GroupsService {
    groups: Arc<Groups>,
}

impl GroupsService {
    /// The service.
    #[must_use]
    pub fn new(groups: Arc<Groups>) -> GroupsService {
        GroupsService { groups }
    }
}

fn filter(filter: Option<pb::GroupFilter>) -> Filter {
    let filter = filter.unwrap_or_default();
    Filter {
        category: filter.category,
        event_types: filter.event_types,
        tag: filter.tag,
        stream_prefix: filter.stream_prefix,
        integration: filter.integration,
        ..Filter::default()
    }
}

fn tuning(tuning: Option<pb::GroupTuning>) -> TuningRequest {
    let tuning = tuning.unwrap_or_default();
    TuningRequest {
        max_retries: tuning.max_retries,
        message_timeout_ms: tuning.message_timeout_ms,
        max_in_flight: tuning.max_in_flight,
        backoff_base_ms: tuning.backoff_base_ms,
        backoff_max_ms: tuning.backoff_max_ms,
    }
}

/// A group's info as a message.
#[must_use]
pub fn group_info(info: &GroupInfo) -> pb::GroupInfo {
    let s = &info.settings;
    pb::GroupInfo {
        name: s.name.clone(),
        filter: Some(pb::GroupFilter {
            category: s.filter.category.clone(),
            event_types: s.filter.event_types.clone(),
            tag: s.filter.tag.clone(),
            stream_prefix: s.filter.stream_prefix.clone(),
            integration: s.filter.integration,
        }),
        start: s.start,
        max_retries: s.max_retries,
        message_timeout_ms: s.message_timeout_ms,
        max_in_flight: s.max_in_flight,
        backoff_base_ms: s.backoff_base_ms,
        backoff_max_ms: s.backoff_max_ms,
        checkpoint: info.status.checkpoint.0,
        head: info.head.0,
        lag: info.lag(),
        in_flight: info.status.in_flight as u64,
        parking: info.status.parking as u64,
        retrying: info.status.retrying as u64,
        buffered: info.status.buffered as u64,
        parked: info.status.parked,
        parked_stream: s.parked_stream(),
        checkpoint_stream: s.checkpoint_stream(),
        home: s.home.clone(),
        running_here: info.running_here,
        members: info
            .status
            .members
            .iter()
            .map(|m| pb::MemberInfo {
                name: m.name.clone(),
                in_flight: m.in_flight as u64,
                max_in_flight: m.max_in_flight as u64,
                queued: m.queued as u64,
                delivered: m.delivered,
                acked: m.acked,
                failed: m.failed,
            })
            .collect(),
    }
}

fn group_status(error: ApiError) -> Status {
    if error.code == ErrorCode::GroupExists {
        return Status::already_exists(format!("{}: {}", error.code, error.message));
    }
    status(error)
}

/// The stream of a member's deliveries.
type ConsumeStream = Pin<Box<dyn Stream<Item = Result<pb::ConsumeResponse, Status>> + Send>>;

/// Forwards the member's answers to its group until the request stream
/// ends (a clean leave) or breaks (a failed one), or the group stops (then
/// the request stream is let go, so the call can end).
async fn forward_answers(membership: Membership, mut requests: Streaming<pb::ConsumeRequest>) {
    use pb::consume_request::Kind;
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            () = membership.group_stopped() => return,
        };
        match request {
            None => {
                membership.leave();
                return;
            }
            Some(Err(_)) => return, // dropped: leaves as failed
            Some(Ok(request)) => match request.kind {
                Some(Kind::Ack(ack)) => membership.ack(ack.positions.into_iter().map(Position).collect()).await,
                Some(Kind::Nack(nack)) => {
                    let action = match pb::NackAction::try_from(nack.action) {
                        Ok(pb::NackAction::Park) => NackAction::Park,
                        Ok(pb::NackAction::Skip) => NackAction::Skip,
                        _ => NackAction::Retry,
                    };
                    membership.nack(nack.positions.into_iter().map(Position).collect(), action, nack.reason).await;
                }
                Some(Kind::Abandon(_)) => return, // dropped: leaves as failed
                Some(Kind::Join(_)) | None => {
                    tracing::debug!("a member sent a second join or an empty request; ignored");
                }
            },
        }
    }
}

#[tonic::async_trait]
impl pb::groups_server::Groups for GroupsService {
    async fn create_group(&self, request: Request<pb::CreateGroupRequest>) -> Result<Response<pb::GroupInfo>, Status> {
        use pb::create_group_request::Start;
        let request = request.into_inner();
        let start = match request.start {
            None | Some(Start::Beginning(_)) => StartFrom::Beginning,
            Some(Start::End(_)) => StartFrom::End,
            Some(Start::Position(position)) => StartFrom::Position(position),
        };
        let groups = &self.groups;
        groups
            .create(&request.name, filter(request.filter), start, &tuning(request.tuning))
            .await
            .map_err(group_status)?;
        let info = groups.info(&request.name).await.map_err(group_status)?;
        Ok(Response::new(group_info(&info)))
    }

    async fn update_group(&self, request: Request<pb::UpdateGroupRequest>) -> Result<Response<pb::GroupInfo>, Status> {
        let request = request.into_inner();
        self.groups.update(&request.name, &tuning(request.tuning)).await.map_err(group_status)?;
        let info = self.groups.info(&request.name).await.map_err(group_status)?;
        Ok(Response::new(group_info(&info)))
    }

    async fn delete_group(&self, request: Request<pb::GroupName>) -> Result<Response<pb::Empty>, Status> {
        self.groups.delete(&request.into_inner().name).await.map_err(group_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_groups(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let groups = self.groups.list().await.iter().map(group_info).collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn get_group(&self, request: Request<pb::GroupName>) -> Result<Response<pb::GroupInfo>, Status> {
        let info = self.groups.info(&request.into_inner().name).await.map_err(group_status)?;
        Ok(Response::new(group_info(&info)))
    }

    async fn move_group(&self, request: Request<pb::MoveGroupRequest>) -> Result<Response<pb::GroupInfo>, Status> {
        let request = request.into_inner();
        self.groups.move_home(&request.name, &request.to).await.map_err(group_status)?;
        let info = self.groups.info(&request.name).await.map_err(group_status)?;
        Ok(Response::new(group_info(&info)))
    }

    async fn replay_parked(
        &self,
        request: Request<pb::GroupName>,
    ) -> Result<Response<pb::ReplayParkedResponse>, Status> {
        let scheduled = self.groups.replay_parked(&request.into_inner().name).await.map_err(group_status)?;
        Ok(Response::new(pb::ReplayParkedResponse { scheduled }))
    }

    type ConsumeStream = ConsumeStream;

    async fn consume(
        &self,
        request: Request<Streaming<pb::ConsumeRequest>>,
    ) -> Result<Response<ConsumeStream>, Status> {
        use pb::consume_request::Kind;
        use pb::consume_response::Kind as Out;
        let mut requests = request.into_inner();
        let join = match requests.next().await {
            Some(Ok(pb::ConsumeRequest { kind: Some(Kind::Join(join)) })) => join,
            Some(Err(error)) => return Err(error),
            _ => {
                return Err(status(ApiError::new(
                    ErrorCode::JoinFirst,
                    "the first message of Consume must be a join naming the group and the member",
                )));
            }
        };
        let mut membership =
            self.groups.join(&join.group, &join.member, join.max_in_flight).await.map_err(group_status)?;
        let deliveries = membership.take_deliveries();
        tokio::spawn(forward_answers(membership, requests));
        let joined =
            futures_util::stream::once(async { Ok(pb::ConsumeResponse { kind: Some(Out::Joined(pb::Empty {})) }) });
        let events = futures_util::stream::unfold(deliveries, |mut deliveries| async move {
            let delivery = deliveries.recv().await?;
            let event =
                pb::GroupEvent { event: Some(recorded_event((*delivery.event).clone())), retries: delivery.retries };
            Some((Ok(pb::ConsumeResponse { kind: Some(Out::Event(event)) }), deliveries))
        });
        Ok(Response::new(Box::pin(joined.chain(events))))
    }
}
