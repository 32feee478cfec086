//! The task that runs one consumer group: it reads the group's feed into
//! the [`Dispatcher`], hands deliveries to members, turns their answers
//! and the clock into dispatcher calls, and writes what must last to the
//! log: parked events to `$parked-<group>` (an event counts as done only
//! once its park is durable) and the checkpoint to `$checkpoint-<group>`
//! (at most once per [`CHECKPOINT_INTERVAL`], and when the group stops).
//!
//! Reading ahead is bounded: the feed runs in its own task and waits
//! while [`READ_AHEAD`] events are unfinished.

use std::sync::Arc;
use std::time::Duration;

use quipu_core::{
    AppendRequest, Direction, EventId, EventType, ExpectedRevision, Position, ProposedEvent, RecordedEvent, Revision,
    Store, StreamName,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::dispatcher::{Delivery, Dispatcher, MemberId, MemberStats, NackAction, ParkOrder};
use super::settings::Settings;
use crate::ApiError;
use crate::feed::{Item, Live, Start};
use crate::integration::IntegrationTypes;

/// Most events read from the log and not finished.
pub const READ_AHEAD: usize = 4096;

/// Least time between two checkpoint writes.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Events read per page of the parked stream.
const PARKED_PAGE: usize = 1000;

/// What a checkpoint record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The group's id: records of an older group of the same name are
    /// ignored.
    pub group_id: u64,
    /// Every feed event before this position is done.
    pub position: u64,
    /// Every parked record before this revision was replayed and done.
    pub parked_from: u64,
    /// A replay covers the parked records before this revision.
    pub parked_to: u64,
}

/// What a parked record holds: where the event is, and why it was parked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// The group's id.
    pub group_id: u64,
    /// The parked event's id.
    pub event_id: String,
    /// Its stream.
    pub stream: String,
    /// Its revision.
    pub revision: u64,
    /// Its position.
    pub position: u64,
    /// Failed attempts.
    pub retries: u32,
    /// Why it was parked.
    pub reason: String,
}

/// What the group is doing, for its info.
#[derive(Debug, Clone)]
pub struct Status {
    /// Every event before it is done.
    pub checkpoint: Position,
    /// Events out to members.
    pub in_flight: usize,
    /// Events given up on whose park record is being written: out of the
    /// members' hands, not done yet.
    pub parking: usize,
    /// Events waiting for a retry.
    pub retrying: usize,
    /// Events read and not finished.
    pub buffered: usize,
    /// Parked records no replay has asked for yet: those of the parked
    /// stream past the last replay's end (kept across restarts).
    pub parked: u64,
    /// Members and their counts.
    pub members: Vec<MemberStats>,
}

/// A request to the group's task.
#[derive(Debug)]
pub enum Command {
    /// A member joins; deliveries go to `deliveries`.
    Join {
        /// Its id.
        id: MemberId,
        /// Its name.
        name: String,
        /// Most events it asks to hold (0: the group's maximum; more is
        /// capped to it, now and when the group is retuned).
        max_in_flight: usize,
        /// Where its deliveries go.
        deliveries: mpsc::UnboundedSender<Delivery>,
    },
    /// A member leaves; `failed` when its connection broke.
    Leave {
        /// Its id.
        id: MemberId,
        /// Whether its events count as failed attempts.
        failed: bool,
    },
    /// A member handled these events.
    Ack {
        /// Its id.
        id: MemberId,
        /// The events' positions.
        positions: Vec<Position>,
    },
    /// A member could not handle these events.
    Nack {
        /// Its id.
        id: MemberId,
        /// The events' positions.
        positions: Vec<Position>,
        /// What to do with them.
        action: NackAction,
        /// Why, in words.
        reason: String,
    },
    /// New retry and flow settings.
    Retune(Box<Settings>),
    /// What the group is doing.
    Status(oneshot::Sender<Status>),
    /// Deliver the parked events not replayed yet, at most `limit`
    /// parked records of them when given; answers how many.
    ReplayParked {
        /// Most parked records to replay (`None`: all).
        limit: Option<u64>,
        /// Where the count goes.
        reply: oneshot::Sender<Result<u64, ApiError>>,
    },
    /// Write the checkpoint and stop; answers when done.
    Stop(oneshot::Sender<()>),
}

/// Outcomes of work the task started in the background.
enum Done {
    Parked(Position),
    ParkFailed(ParkOrder),
    CheckpointWritten(Checkpoint),
    CheckpointFailed,
    ParkedRead {
        records: Vec<(u64, Option<RecordedEvent>)>,
        to: u64,
        reply: Option<oneshot::Sender<Result<u64, ApiError>>>,
    },
}

/// What a group's task reads with.
#[derive(Clone)]
pub struct Feeds {
    /// The store.
    pub store: Arc<Store>,
    /// The head of the log.
    pub live: Live,
    /// The integration event types, for groups that take only those.
    pub integration: Arc<IntegrationTypes>,
    /// Deliveries come at their types' current versions.
    pub upcasters: Arc<crate::upcast::Upcasters>,
}

/// A group's task.
pub struct Actor {
    store: Arc<Store>,
    live: Live,
    integration: Arc<IntegrationTypes>,
    upcasters: Arc<crate::upcast::Upcasters>,
    settings: Settings,
    dispatcher: Dispatcher,
    members: std::collections::HashMap<MemberId, mpsc::UnboundedSender<Delivery>>,
    /// What each member asked to hold at most (0: the group's maximum).
    asked_in_flight: std::collections::HashMap<MemberId, usize>,
    done_sender: mpsc::UnboundedSender<Done>,
    done: mpsc::UnboundedReceiver<Done>,
    written: Checkpoint,
    checkpoint_writing: bool,
    parked_to: u64,
    parks_to_retry: Vec<ParkOrder>,
}

impl Actor {
    /// A group's task resuming from `checkpoint` (its last record, if it
    /// belongs to this group).
    #[must_use]
    pub fn new(feeds: &Feeds, settings: Settings, checkpoint: Option<Checkpoint>) -> Actor {
        let resumed = checkpoint.filter(|c| c.group_id == settings.id).unwrap_or(Checkpoint {
            group_id: settings.id,
            position: settings.start,
            parked_from: settings.parked_from,
            parked_to: settings.parked_from,
        });
        let dispatcher = Dispatcher::new(settings.tuning(), Position(resumed.position), resumed.parked_from)
            .sharing(settings.strategy);
        let (done_sender, done) = mpsc::unbounded_channel();
        Actor {
            store: Arc::clone(&feeds.store),
            live: feeds.live.clone(),
            integration: Arc::clone(&feeds.integration),
            upcasters: Arc::clone(&feeds.upcasters),
            settings,
            dispatcher,
            members: std::collections::HashMap::new(),
            asked_in_flight: std::collections::HashMap::new(),
            done_sender,
            done,
            written: resumed,
            checkpoint_writing: false,
            parked_to: resumed.parked_to,
            parks_to_retry: Vec::new(),
        }
    }

    /// The bound of a member that asked for `asked` (0: the group's
    /// maximum), within the group's maximum.
    fn member_bound(&self, asked: usize) -> usize {
        let group = self.settings.max_in_flight as usize;
        if asked == 0 { group } else { asked.clamp(1, group) }
    }

    /// Runs until [`Command::Stop`] or until every command sender is gone.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (events_sender, mut events) = mpsc::channel(256);
        let source = self.settings.filter.source(&self.integration).unwrap_or(crate::feed::Source::All);
        let start = self.feed_start(&source);
        let feed = match self.live.feed(Arc::clone(&self.store), source, start) {
            Ok(feed) => feed,
            Err(error) => {
                tracing::error!(group = %self.settings.name, message = %error.message, "cannot start the group's feed");
                return;
            }
        };
        let filter = self.settings.filter.clone();
        let reader = tokio::spawn(async move {
            let mut feed = feed;
            while let Some(item) = feed.next_item().await {
                if let Item::Event(event) = item
                    && filter.matches(&event)
                    && events_sender.send(*event).await.is_err()
                {
                    return;
                }
            }
        });
        if self.parked_to > self.written.parked_from {
            self.read_parked(self.written.parked_from, self.parked_to, None);
        }
        let mut checkpoints = tokio::time::interval(CHECKPOINT_INTERVAL);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_reply = None;
        loop {
            let wake = self.dispatcher.next_wake().map(Instant::from_std);
            let room = self.dispatcher.unfinished() < READ_AHEAD;
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop(reply)) => {
                        stop_reply = Some(reply);
                        break;
                    }
                    Some(command) => self.handle(command),
                    None => break,
                },
                Some(event) = events.recv(), if room => self.dispatcher.push(event),
                () = sleep_until(wake), if wake.is_some() => {
                    let parks = self.dispatcher.tick(std::time::Instant::now());
                    self.park_all(parks);
                }
                Some(done) = self.done.recv() => self.finish(done),
                _ = checkpoints.tick() => {
                    let parks = std::mem::take(&mut self.parks_to_retry);
                    self.park_all(parks);
                    self.write_checkpoint();
                }
            }
            self.deliver();
        }
        reader.abort();
        self.members.clear();
        self.final_checkpoint().await;
        if let Some(reply) = stop_reply {
            let _ = reply.send(());
        }
    }

    /// Where the feed starts: at the checkpoint, which for a group on one
    /// stream is the stream's first revision past it (and not before the
    /// filter's first revision).
    fn feed_start(&self, source: &crate::feed::Source) -> Start {
        let position = Position(self.written.position);
        let crate::feed::Source::Stream(stream) = source else { return Start::Position(position) };
        let done = match position.0.checked_sub(1) {
            None => Ok(None),
            Some(before) => self.store.revision_as_of(stream, quipu_core::AsOf::Position(Position(before))),
        };
        let next = match done {
            Ok(done) => done.map_or(0, |r| r.0 + 1),
            Err(quipu_core::Error::StreamNotFound { .. }) => 0,
            Err(error) => {
                tracing::warn!(group = %self.settings.name, %error, "cannot place the checkpoint in the stream; starting at its first revision");
                0
            }
        };
        Start::Revision(Revision(next.max(self.settings.filter.from_revision.unwrap_or(0))))
    }

    fn handle(&mut self, command: Command) {
        let now = std::time::Instant::now();
        match command {
            Command::Join { id, name, max_in_flight, deliveries } => {
                self.dispatcher.join(id, &name, self.member_bound(max_in_flight));
                self.members.insert(id, deliveries);
                self.asked_in_flight.insert(id, max_in_flight);
            }
            Command::Leave { id, failed } => {
                self.members.remove(&id);
                self.asked_in_flight.remove(&id);
                let parks = self.dispatcher.leave(id, failed);
                self.park_all(parks);
            }
            Command::Ack { id, positions } => {
                for position in positions {
                    self.dispatcher.ack(id, position);
                }
            }
            Command::Nack { id, positions, action, reason } => {
                for position in positions {
                    let (park, _) = self.dispatcher.nack(id, position, action, &reason, now);
                    self.park_all(park);
                }
            }
            Command::Retune(settings) => {
                self.dispatcher.retune(settings.tuning());
                self.settings = *settings;
                for (id, asked) in &self.asked_in_flight {
                    self.dispatcher.set_max_in_flight(*id, self.member_bound(*asked));
                }
            }
            Command::Status(reply) => {
                let unreplayed = self.unreplayed_parked();
                let _ = reply.send(Status {
                    checkpoint: self.dispatcher.watermark(),
                    in_flight: self.dispatcher.in_flight(),
                    parking: self.dispatcher.parking(),
                    retrying: self.dispatcher.retrying(),
                    buffered: self.dispatcher.unfinished(),
                    parked: unreplayed.end - unreplayed.start,
                    members: self.dispatcher.members(),
                });
            }
            Command::ReplayParked { limit, reply } => {
                let unreplayed = self.unreplayed_parked();
                let (from, end) = (unreplayed.start, unreplayed.end);
                let to = limit.map_or(end, |limit| end.min(from.saturating_add(limit)));
                if to <= from {
                    let _ = reply.send(Ok(0));
                    return;
                }
                self.parked_to = to;
                self.read_parked(from, to, Some(reply));
            }
            Command::Stop(_) => unreachable!("run handles Stop"),
        }
    }

    /// Sends what members can take now; a member whose connection is gone
    /// leaves as failed.
    fn deliver(&mut self) {
        let deliveries = self.dispatcher.dispatch(std::time::Instant::now());
        let mut gone = Vec::new();
        for (member, mut delivery) in deliveries {
            // Upcast as it goes out, so upcasters declared while events
            // wait in the group apply to them too.
            if let Some(upcast) = self.upcasters.upcast_one(&delivery.event) {
                delivery.event = Arc::new(upcast);
            }
            let sent = self.members.get(&member).is_some_and(|sender| sender.send(delivery).is_ok());
            if !sent {
                gone.push(member);
            }
        }
        for member in gone {
            self.members.remove(&member);
            let parks = self.dispatcher.leave(member, true);
            self.park_all(parks);
        }
    }

    fn finish(&mut self, done: Done) {
        match done {
            Done::Parked(position) => self.dispatcher.parked(position),
            Done::ParkFailed(order) => self.parks_to_retry.push(order),
            Done::CheckpointWritten(checkpoint) => {
                self.checkpoint_writing = false;
                self.written = checkpoint;
            }
            Done::CheckpointFailed => self.checkpoint_writing = false,
            Done::ParkedRead { records, to, reply } => {
                let mut scheduled = 0;
                for (revision, event) in records {
                    match event {
                        Some(event) => {
                            self.dispatcher.push_parked(event, revision);
                            scheduled += 1;
                        }
                        None => self.dispatcher.skip_parked(revision),
                    }
                }
                if to > 0 {
                    self.dispatcher.skip_parked(to - 1);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(scheduled));
                }
            }
        }
    }

    /// Revisions of the parked stream's records that no replay covers yet.
    fn unreplayed_parked(&self) -> std::ops::Range<u64> {
        let end =
            self.store.stream_info(&self.parked_stream()).map_or(0, |info| info.last_revision.map_or(0, |r| r.0 + 1));
        let from = self.parked_to.max(self.dispatcher.parked_watermark());
        from..end.max(from)
    }

    fn parked_stream(&self) -> StreamName {
        StreamName::system(self.settings.parked_stream()).expect("group names make valid stream names")
    }

    fn checkpoint_stream(&self) -> StreamName {
        StreamName::system(self.settings.checkpoint_stream()).expect("group names make valid stream names")
    }

    /// Appends each order to the parked stream in the background.
    fn park_all(&mut self, orders: impl IntoIterator<Item = ParkOrder>) {
        for order in orders {
            let record = ParkedRecord {
                group_id: self.settings.id,
                event_id: order.event.id.to_string(),
                stream: order.event.stream.as_str().to_string(),
                revision: order.event.revision.0,
                position: order.event.position.0,
                retries: order.retries,
                reason: order.reason.clone(),
            };
            let request = system_append(self.parked_stream(), "Parked", &record);
            let done = self.done_sender.clone();
            self.store.submit(request, move |outcome| {
                let message = match outcome {
                    Ok(_) => Done::Parked(order.event.position),
                    Err(error) => {
                        tracing::warn!(%error, "parking an event failed; retrying");
                        Done::ParkFailed(order)
                    }
                };
                let _ = done.send(message);
            });
        }
    }

    fn current_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            group_id: self.settings.id,
            position: self.dispatcher.watermark().0,
            parked_from: self.dispatcher.parked_watermark(),
            parked_to: self.parked_to,
        }
    }

    /// Appends the checkpoint in the background when it moved and none is
    /// being written.
    fn write_checkpoint(&mut self) {
        let checkpoint = self.current_checkpoint();
        if self.checkpoint_writing || checkpoint == self.written {
            return;
        }
        self.checkpoint_writing = true;
        let request = system_append(self.checkpoint_stream(), "Checkpoint", &checkpoint);
        let done = self.done_sender.clone();
        self.store.submit(request, move |outcome| {
            let message = match outcome {
                Ok(_) => Done::CheckpointWritten(checkpoint),
                Err(error) => {
                    tracing::warn!(%error, "writing a group checkpoint failed");
                    Done::CheckpointFailed
                }
            };
            let _ = done.send(message);
        });
    }

    /// Writes the checkpoint and waits for it, after finishing parks
    /// already under way.
    async fn final_checkpoint(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            self.finish(done);
        }
        let checkpoint = self.current_checkpoint();
        if checkpoint == self.written {
            return;
        }
        let request = system_append(self.checkpoint_stream(), "Checkpoint", &checkpoint);
        let (reply, outcome) = oneshot::channel();
        self.store.submit(request, move |result| {
            let _ = reply.send(result);
        });
        match outcome.await {
            Ok(Ok(_)) => self.written = checkpoint,
            Ok(Err(error)) => tracing::warn!(%error, "the final group checkpoint was not written"),
            Err(_) => tracing::warn!("the store closed before the final group checkpoint"),
        }
    }

    /// Reads parked records `from..to` in the background; records of this
    /// group come back with their events.
    fn read_parked(&self, from: u64, to: u64, reply: Option<oneshot::Sender<Result<u64, ApiError>>>) {
        let (store, stream, group_id, done) =
            (Arc::clone(&self.store), self.parked_stream(), self.settings.id, self.done_sender.clone());
        tokio::task::spawn_blocking(move || {
            let records = read_parked_records(&store, &stream, group_id, from, to);
            let message = match records {
                Ok(records) => Done::ParkedRead { records, to, reply },
                Err(error) => {
                    tracing::warn!(%error, "reading parked events failed");
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(ApiError::from(error)));
                    }
                    return;
                }
            };
            let _ = done.send(message);
        });
    }
}

/// The parked records `from..to` of `stream`, each with the parked event
/// when the record is this group's and the event can be read.
fn read_parked_records(
    store: &Store,
    stream: &StreamName,
    group_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Option<RecordedEvent>)>, quipu_core::Error> {
    let mut records = Vec::new();
    let mut next = from;
    while next < to {
        let page = store.read_stream(stream, Some(Revision(next)), Direction::Forwards, PARKED_PAGE)?;
        if page.is_empty() {
            break;
        }
        for record in page {
            if record.revision.0 >= to {
                return Ok(records);
            }
            next = record.revision.0 + 1;
            let parked: Option<ParkedRecord> = serde_json::from_slice(&record.data).ok();
            let event = match parked.filter(|p| p.group_id == group_id) {
                Some(parked) => match EventId::parse(&parked.event_id) {
                    Ok(id) => store.read_event(&id)?,
                    Err(_) => None,
                },
                None => None,
            };
            records.push((record.revision.0, event));
        }
    }
    Ok(records)
}

/// The last checkpoint record of `stream`, if it has one that decodes.
///
/// # Errors
/// Read errors of the store.
pub fn last_checkpoint(store: &Store, stream: &StreamName) -> Result<Option<Checkpoint>, quipu_core::Error> {
    match store.read_stream(stream, None, Direction::Backwards, 1) {
        Ok(events) => Ok(events.first().and_then(|e| serde_json::from_slice(&e.data).ok())),
        Err(quipu_core::Error::StreamNotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// An append of one JSON event of `event_type` to the system `stream`.
pub fn system_append(stream: StreamName, event_type: &str, data: &impl Serialize) -> AppendRequest {
    let data = serde_json::to_vec(data).expect("system records serialize");
    let event_type = EventType::new(event_type).expect("system event types are valid");
    AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![ProposedEvent::new(event_type, data)])
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
