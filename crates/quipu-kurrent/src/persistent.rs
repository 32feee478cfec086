//! `event_store.client.persistent_subscriptions.PersistentSubscriptions`
//! over Quipu's consumer groups (see [`super::group`] for the mapping).
//!
//! A reader (`Read`) joins the group as a member holding at most its
//! buffer size: it gets a confirmation `<stream>::<group>`, then events
//! with their retry counts, and answers with acknowledgements by event
//! id. A negative acknowledgement parks, retries or skips; `Stop` and
//! `Unknown` retry. A reader that goes away hands its events back as
//! failed attempts; one that half-closes leaves cleanly.

use std::collections::HashMap;
use std::sync::Arc;

use quipu_core::{AsOf, EventId, Position, Store, StreamName};
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::persistent_subscriptions as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::group::{self, Asked, Kept, Subscription};
use super::wire;
use quipu_node::group::dispatcher::{Delivery, NackAction};
use quipu_node::group::{GroupInfo, Groups, Membership};

/// The stream a request's `stream_option` names; `None` for `$all`. Each
/// request type has its own oneof enum `$kind` with these two cases.
macro_rules! named_stream {
    ($option:expr, $kind:ident) => {
        match &$option {
            Some($kind::StreamIdentifier(identifier)) => Some(identifier),
            Some($kind::All(_)) | None => None,
        }
    };
}

/// Where a start oneof (`$kind`: `Start`, `End`, and a case carrying
/// a value) points: the value given, and whether it is the end. Create and
/// Update each have their own enums of this shape.
macro_rules! start_of {
    ($option:expr, $kind:ident :: $case:ident ( $bound:ident ) => $value:expr) => {
        match $option {
            Some($kind::$case($bound)) => (Some($value), false),
            Some($kind::End(_)) => (None, true),
            Some($kind::Start(_)) | None => (None, false),
        }
    };
}

/// Answers a reader may have queued before it takes them.
const READ_QUEUE: usize = 64;

/// Largest buffer a reader may ask for.
const BUFFER_MAX: i32 = 10_000;

/// The PersistentSubscriptions service.
pub struct PersistentService {
    /// The server's consumer groups.
    pub groups: Arc<Groups>,
    /// The store, for positions in infos.
    pub store: Arc<Store>,
}

type ReadStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::ReadResp, Status>> + Send>>;

#[tonic::async_trait]
impl pb::persistent_subscriptions_server::PersistentSubscriptions for PersistentService {
    type ReadStream = ReadStream;

    async fn create(&self, request: Request<pb::CreateReq>) -> Result<Response<pb::CreateResp>, Status> {
        use pb::create_req::options::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let asked = Asked::create(options.settings.unwrap_or_default());
        let (subscription, start, filter, start_from) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                use pb::create_req::stream_options::RevisionOption;
                let subscription = Subscription::new(stream.stream_identifier.as_ref(), &options.group_name)?;
                let name = wire::stream_name(stream.stream_identifier.as_ref())?;
                let (revision, from_end) = start_of!(stream.revision_option, RevisionOption::Revision(r) => r);
                let (start, filter, text) = group::stream_start(&name, revision, from_end);
                (subscription, start, filter, text)
            }
            Some(StreamOption::All(all)) => {
                use pb::create_req::all_options::{AllOption, FilterOption};
                let subscription = Subscription::new(None, &options.group_name)?;
                let (commit, from_end) = start_of!(all.all_option, AllOption::Position(p) => p.commit_position);
                let filter = match &all.filter_option {
                    Some(FilterOption::Filter(filter)) => group::all_filter(Some(filter))?,
                    Some(FilterOption::NoFilter(_)) | None => group::all_filter(None)?,
                };
                let (start, text) = group::all_start(commit, from_end);
                (subscription, start, filter, text)
            }
            // Older clients name the stream outside the oneof, with the
            // start revision in the settings.
            None => {
                let subscription = Subscription::new(options.stream_identifier.as_ref(), &options.group_name)?;
                let name = wire::stream_name(options.stream_identifier.as_ref())?;
                let (start, filter, text) = group::stream_start(&name, Some(asked.settings.revision), false);
                (subscription, start, filter, text)
            }
        };
        let kept = asked.kept(&subscription, start_from);
        self.groups
            .create_sharing(
                &subscription.group_name(),
                filter,
                start,
                &asked.tuning()?,
                asked.strategy()?,
                Some(kept.to_value()),
            )
            .await
            .map_err(|error| subscription.status(&error))?;
        Ok(Response::new(pb::CreateResp {}))
    }

    async fn update(&self, request: Request<pb::UpdateReq>) -> Result<Response<pb::UpdateResp>, Status> {
        use pb::update_req::options::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let asked = Asked::update(options.settings.unwrap_or_default());
        let (subscription, start_from) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                use pb::update_req::stream_options::RevisionOption;
                let subscription = Subscription::new(stream.stream_identifier.as_ref(), &options.group_name)?;
                let name = wire::stream_name(stream.stream_identifier.as_ref())?;
                let (revision, from_end) = start_of!(stream.revision_option, RevisionOption::Revision(r) => r);
                (subscription, group::stream_start(&name, revision, from_end).2)
            }
            Some(StreamOption::All(all)) => {
                use pb::update_req::all_options::AllOption;
                let subscription = Subscription::new(None, &options.group_name)?;
                let (commit, from_end) = start_of!(all.all_option, AllOption::Position(p) => p.commit_position);
                (subscription, group::all_start(commit, from_end).1)
            }
            None => {
                let subscription = Subscription::new(options.stream_identifier.as_ref(), &options.group_name)?;
                (subscription, asked.settings.revision.to_string())
            }
        };
        // The start only matters to a group with no checkpoint yet; Quipu
        // keeps the group's and shows the new one.
        let kept = asked.kept(&subscription, start_from);
        self.groups
            .reconfigure(&subscription.group_name(), &asked.tuning()?, Some(asked.strategy()?), Some(kept.to_value()))
            .await
            .map_err(|error| subscription.status(&error))?;
        Ok(Response::new(pb::UpdateResp {}))
    }

    async fn delete(&self, request: Request<pb::DeleteReq>) -> Result<Response<pb::DeleteResp>, Status> {
        use pb::delete_req::options::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let identifier = named_stream!(options.stream_option, StreamOption);
        let subscription = Subscription::new(identifier, &options.group_name)?;
        self.groups.delete(&subscription.group_name()).await.map_err(|error| subscription.status(&error))?;
        Ok(Response::new(pb::DeleteResp {}))
    }

    async fn read(&self, request: Request<Streaming<pb::ReadReq>>) -> Result<Response<ReadStream>, Status> {
        use pb::read_req::options::StreamOption;
        use pb::read_req::options::uuid_option::Content as UuidForm;
        let connection = request
            .metadata()
            .get("connection-name")
            .and_then(|v| v.to_str().ok())
            .filter(|name| !name.is_empty() && name.len() <= 200)
            .map(str::to_string);
        let mut requests = request.into_inner();
        let first = requests.message().await?.and_then(|r| r.content);
        let Some(pb::read_req::Content::Options(options)) = first else {
            return Err(Status::invalid_argument("a persistent subscription read starts with its options"));
        };
        let identifier = named_stream!(options.stream_option, StreamOption);
        let subscription = Subscription::new(identifier, &options.group_name)?;
        let structured = matches!(options.uuid_option.and_then(|u| u.content), Some(UuidForm::Structured(_)));
        let name = subscription.group_name();
        let info = self.groups.info(&name).await.map_err(|error| subscription.status(&error))?;
        let limit = Kept::of(&info.settings).map_or(0, |kept| kept.max_subscriber_count);
        if limit > 0 && info.status.members.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(subscription.full());
        }
        let member = connection.unwrap_or_else(|| format!("kurrent-{}", EventId::random()));
        let buffer = u32::try_from(options.buffer_size.clamp(1, BUFFER_MAX)).unwrap_or(1);
        let membership = self.groups.join(&name, &member, buffer).await.map_err(|error| subscription.status(&error))?;
        let (answers, receiver) = mpsc::channel(READ_QUEUE);
        let confirmation = pb::read_resp::Content::SubscriptionConfirmation(pb::read_resp::SubscriptionConfirmation {
            subscription_id: subscription.confirmation_id(),
        });
        answers
            .send(Ok(pb::ReadResp { content: Some(confirmation) }))
            .await
            .map_err(|_| Status::cancelled("the reader went away"))?;
        let held_bound = 2 * buffer as usize + 64;
        let reader = Reader { subscription, membership, structured, held: HashMap::new(), held_bound, answers };
        tokio::spawn(reader.run(requests));
        Ok(Response::new(Box::pin(super::streams::tokio_stream_from(receiver))))
    }

    async fn get_info(&self, request: Request<pb::GetInfoReq>) -> Result<Response<pb::GetInfoResp>, Status> {
        use pb::get_info_req::options::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let identifier = named_stream!(options.stream_option, StreamOption);
        let subscription = Subscription::new(identifier, &options.group_name)?;
        let info = self.groups.info(&subscription.group_name()).await.map_err(|error| subscription.status(&error))?;
        let info = self.subscription_info(&info).ok_or_else(|| subscription.not_found())?;
        Ok(Response::new(pb::GetInfoResp { subscription_info: Some(info) }))
    }

    async fn replay_parked(
        &self,
        request: Request<pb::ReplayParkedReq>,
    ) -> Result<Response<pb::ReplayParkedResp>, Status> {
        use pb::replay_parked_req::options::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let identifier = named_stream!(options.stream_option, StreamOption);
        let subscription = Subscription::new(identifier, &options.group_name)?;
        let limit = match options.stop_at_option {
            Some(pb::replay_parked_req::options::StopAtOption::StopAt(stop_at)) => {
                Some(u64::try_from(stop_at).map_err(|_| Status::invalid_argument("stopAt must not be negative"))?)
            }
            Some(pb::replay_parked_req::options::StopAtOption::NoLimit(_)) | None => None,
        };
        self.groups
            .replay_parked_up_to(&subscription.group_name(), limit)
            .await
            .map_err(|error| subscription.status(&error))?;
        Ok(Response::new(pb::ReplayParkedResp {}))
    }

    async fn list(&self, request: Request<pb::ListReq>) -> Result<Response<pb::ListResp>, Status> {
        use pb::list_req::options::ListOption;
        use pb::list_req::stream_option::StreamOption;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("options are required"))?;
        let source = match options.list_option.and_then(|o| match o {
            ListOption::ListAllSubscriptions(_) => None,
            ListOption::ListForStream(stream) => Some(stream.stream_option),
        }) {
            None => None,
            Some(Some(StreamOption::Stream(identifier))) => {
                Some(wire::stream_name(Some(&identifier))?.as_str().to_string())
            }
            Some(Some(StreamOption::All(_)) | None) => Some(group::ALL.to_string()),
        };
        let subscriptions = self
            .groups
            .list()
            .await
            .iter()
            .filter_map(|info| self.subscription_info(info))
            .filter(|info| source.as_deref().is_none_or(|s| s == info.event_source))
            .collect();
        Ok(Response::new(pb::ListResp { subscriptions }))
    }

    async fn restart_subsystem(&self, _request: Request<shared::Empty>) -> Result<Response<shared::Empty>, Status> {
        // Groups need no restart: each runs on its own.
        Ok(Response::new(shared::Empty {}))
    }
}

impl PersistentService {
    /// A group's info as the protocol shows it; `None` for a group the
    /// door did not make.
    fn subscription_info(&self, info: &GroupInfo) -> Option<pb::SubscriptionInfo> {
        let kept = Kept::of(&info.settings)?;
        let members = &info.status.members;
        let connections = members
            .iter()
            .map(|member| pb::subscription_info::ConnectionInfo {
                from: member.name.clone(),
                total_items: i64::try_from(member.delivered).unwrap_or(i64::MAX),
                available_slots: count(member.max_in_flight.saturating_sub(member.in_flight)),
                in_flight_messages: count(member.in_flight),
                connection_name: member.name.clone(),
                ..pb::subscription_info::ConnectionInfo::default()
            })
            .collect();
        let delivered: u64 = members.iter().map(|m| m.delivered).sum();
        let done_before = info.status.checkpoint.0;
        let last_checkpointed =
            (done_before > info.settings.start).then(|| self.place(&kept, Position(done_before - 1)));
        let last_known = info.head.0.checked_sub(1).map(|last| self.place(&kept, Position(last)));
        let settings = &info.settings;
        Some(pb::SubscriptionInfo {
            event_source: kept.source.clone(),
            group_name: kept.group.clone(),
            status: "Live".to_string(),
            connections,
            total_items: i64::try_from(delivered).unwrap_or(i64::MAX),
            last_checkpointed_event_position: last_checkpointed.flatten().unwrap_or_default(),
            last_known_event_position: last_known.flatten().unwrap_or_default(),
            resolve_link_tos: kept.resolve_links,
            start_from: kept.start_from.clone(),
            message_timeout_milliseconds: i32::try_from(settings.message_timeout_ms).unwrap_or(i32::MAX),
            extra_statistics: kept.extra_statistics,
            max_retry_count: i32::try_from(settings.max_retries).unwrap_or(i32::MAX),
            live_buffer_size: kept.live_buffer_size,
            buffer_size: kept.history_buffer_size,
            read_batch_size: kept.read_batch_size,
            check_point_after_milliseconds: kept.checkpoint_after_ms,
            min_check_point_count: kept.min_checkpoint_count,
            max_check_point_count: kept.max_checkpoint_count,
            read_buffer_count: count(info.status.buffered),
            retry_buffer_count: count(info.status.retrying),
            // As KurrentDB counts them: an event being parked is outstanding
            // until its park is durable.
            total_in_flight_messages: count(info.status.in_flight + info.status.parking),
            outstanding_messages_count: count(info.status.in_flight + info.status.parking),
            named_consumer_strategy: kept.consumer_strategy.clone(),
            max_subscriber_count: kept.max_subscriber_count,
            parked_message_count: i64::try_from(info.status.parked).unwrap_or(i64::MAX),
            ..pb::SubscriptionInfo::default()
        })
    }

    /// The event at or before `position` as the subscription's source
    /// places it: a revision of its stream, or `C:x/P:x` on `$all`.
    fn place(&self, kept: &Kept, position: Position) -> Option<String> {
        if kept.source == group::ALL {
            let commit = wire::commit_position(position.0);
            return Some(format!("C:{commit}/P:{commit}"));
        }
        let stream = StreamName::new(kept.source.clone()).ok()?;
        let revision = self.store.revision_as_of(&stream, AsOf::Position(position)).ok()??;
        Some(revision.0.to_string())
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// One reader of a group: deliveries out, answers in.
struct Reader {
    subscription: Subscription,
    membership: Membership,
    structured: bool,
    /// Positions of the events it holds, by id, with when each went out.
    held: HashMap<EventId, (Position, std::time::Instant)>,
    /// Entries of `held` past which the timed-out ones are dropped.
    held_bound: usize,
    answers: mpsc::Sender<Result<pb::ReadResp, Status>>,
}

impl Reader {
    /// Runs until the reader or the group goes away.
    async fn run(mut self, mut requests: Streaming<pb::ReadReq>) {
        let mut deliveries = self.membership.take_deliveries();
        loop {
            tokio::select! {
                delivery = deliveries.recv() => {
                    let Some(delivery) = delivery else {
                        let _ = self.answers.send(Err(self.subscription.dropped())).await;
                        return;
                    };
                    self.hold(&delivery);
                    if self.answers.send(Ok(self.event(delivery))).await.is_err() {
                        return;
                    }
                }
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(status) = self.answer(request).await {
                            let _ = self.answers.send(Err(status)).await;
                            return;
                        }
                    }
                    Ok(None) => {
                        self.membership.leave();
                        return;
                    }
                    Err(_) => return,
                },
                () = self.answers.closed() => return,
            }
        }
    }

    /// Notes a delivery until it is answered. Events the group took back
    /// after the message timeout are never answered here; they are
    /// forgotten once the reader holds more than it could.
    fn hold(&mut self, delivery: &Delivery) {
        let now = std::time::Instant::now();
        self.held.insert(delivery.event.id, (delivery.event.position, now));
        if self.held.len() > self.held_bound {
            let timeout = self.membership.message_timeout();
            self.held.retain(|_, (_, sent)| now.duration_since(*sent) < timeout);
        }
    }

    /// Applies an acknowledgement or a negative one.
    async fn answer(&mut self, request: pb::ReadReq) -> Result<(), Status> {
        use pb::read_req::nack::Action;
        match request.content {
            Some(pb::read_req::Content::Ack(ack)) => {
                let positions = self.positions(&ack.ids)?;
                self.membership.ack(positions).await;
            }
            Some(pb::read_req::Content::Nack(nack)) => {
                let positions = self.positions(&nack.ids)?;
                let action = match Action::try_from(nack.action) {
                    Ok(Action::Park) => NackAction::Park,
                    Ok(Action::Skip) => NackAction::Skip,
                    Ok(Action::Retry | Action::Stop | Action::Unknown) | Err(_) => NackAction::Retry,
                };
                self.membership.nack(positions, action, nack.reason).await;
            }
            Some(pb::read_req::Content::Options(_)) => {
                return Err(Status::invalid_argument("a persistent subscription read sends its options once"));
            }
            None => return Err(Status::invalid_argument("an empty persistent subscription request")),
        }
        Ok(())
    }

    /// The positions of the held events `ids` names; ids of events not
    /// held (answered already, or taken back after a timeout) are passed
    /// over.
    fn positions(&mut self, ids: &[shared::Uuid]) -> Result<Vec<Position>, Status> {
        let mut positions = Vec::with_capacity(ids.len());
        for id in ids {
            let id = wire::event_id(Some(id))?;
            positions.extend(self.held.remove(&id).map(|(position, _)| position));
        }
        Ok(positions)
    }

    fn event(&self, delivery: Delivery) -> pb::ReadResp {
        let parts = wire::event_parts(Arc::unwrap_or_clone(delivery.event), self.structured);
        let commit = parts.commit;
        let recorded = wire::recorded_event!(pb::read_resp::read_event::RecordedEvent, parts);
        let event = pb::read_resp::ReadEvent {
            event: Some(recorded),
            link: None,
            position: Some(pb::read_resp::read_event::Position::CommitPosition(commit)),
            count: Some(pb::read_resp::read_event::Count::RetryCount(
                i32::try_from(delivery.retries).unwrap_or(i32::MAX),
            )),
        };
        pb::ReadResp { content: Some(pb::read_resp::Content::Event(event)) }
    }
}
