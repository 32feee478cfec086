//! Every consumer group of a server: created, updated and deleted through
//! records in the system stream `$groups` (so they outlive restarts and
//! travel with the log), each run by its own [`Actor`].
//!
//! Changes are serialized and each `$groups` append expects the revision
//! the registry last saw, so two servers on one log could not both create
//! the same group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quipu_core::{Position, Store, StreamName};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::actor::{Actor, Command, Feeds, Status, last_checkpoint};
use super::dispatcher::{Delivery, MemberId, NackAction, Strategy};
use super::settings::{Filter, Settings, StartFrom, TuningRequest, check_name};
use crate::record_log::RecordLog;
use crate::{ApiError, ErrorCode};

/// The system stream holding group definitions.
pub const GROUPS_STREAM: &str = "$groups";

/// Records of `$groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Created(Settings),
    Updated(Settings),
    Deleted { name: String, id: u64 },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::Created(_) => "GroupCreated",
            Record::Updated(_) => "GroupUpdated",
            Record::Deleted { .. } => "GroupDeleted",
        }
    }
}

/// A group's settings and what it is doing.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// Its settings.
    pub settings: Settings,
    /// What it is doing.
    pub status: Status,
    /// Position after the log's last event.
    pub head: Position,
}

impl GroupInfo {
    /// Positions between the checkpoint and the head.
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.head.0.saturating_sub(self.status.checkpoint.0)
    }
}

struct Running {
    settings: Settings,
    commands: mpsc::Sender<Command>,
}

struct Registry {
    groups: BTreeMap<String, Running>,
    /// `$groups`.
    log: RecordLog<Record>,
}

/// The server's consumer groups.
pub struct Groups {
    store: Arc<Store>,
    feeds: Feeds,
    registry: Mutex<Registry>,
    next_member: AtomicU64,
}

/// A member in a group: receives deliveries, sends answers. Dropping it
/// leaves the group as failed unless [`Membership::leave`] was called.
pub struct Membership {
    id: MemberId,
    commands: mpsc::Sender<Command>,
    deliveries: Option<mpsc::UnboundedReceiver<Delivery>>,
    message_timeout: std::time::Duration,
    left: bool,
}

impl Membership {
    /// The member's deliveries, once; the channel ends when the member
    /// leaves or the group stops.
    ///
    /// # Panics
    /// When called twice.
    pub fn take_deliveries(&mut self) -> mpsc::UnboundedReceiver<Delivery> {
        self.deliveries.take().expect("deliveries are taken once")
    }

    /// How long a delivery may stay unanswered in this group.
    #[must_use]
    pub fn message_timeout(&self) -> std::time::Duration {
        self.message_timeout
    }

    /// Acknowledges the events at `positions`; waits while the group's
    /// task has [`COMMANDS_MAX`] commands to handle (a member that answers
    /// faster than its group keeps up is held back, never buffered
    /// without bound).
    pub async fn ack(&self, positions: Vec<Position>) {
        let _ = self.commands.send(Command::Ack { id: self.id, positions }).await;
    }

    /// Negatively acknowledges the events at `positions`; waits as
    /// [`Membership::ack`] does.
    pub async fn nack(&self, positions: Vec<Position>, action: NackAction, reason: String) {
        let _ = self.commands.send(Command::Nack { id: self.id, positions, action, reason }).await;
    }

    /// Resolves when the group's task has stopped (the group was deleted
    /// or the server is stopping).
    pub async fn group_stopped(&self) {
        self.commands.closed().await;
    }

    /// Leaves cleanly: events held go back without counting as failures.
    pub fn leave(mut self) {
        self.left = true;
        leave(&self.commands, Command::Leave { id: self.id, failed: false });
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if !self.left {
            leave(&self.commands, Command::Leave { id: self.id, failed: true });
        }
    }
}

/// Commands a group's task may have waiting; past that, senders wait for
/// room (members' answers hold back their connections).
pub const COMMANDS_MAX: usize = 1024;

/// Hands a member's `leave` to its group without waiting: when the
/// group's queue is full, a task sends it once there is room (so a
/// member's events go back to the group in every case, while a runtime
/// runs; without one the group is stopping anyway).
fn leave(commands: &mpsc::Sender<Command>, leave: Command) {
    match commands.try_send(leave) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(leave)) => {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let commands = commands.clone();
                runtime.spawn(async move {
                    let _ = commands.send(leave).await;
                });
            }
        }
    }
}

impl Groups {
    /// Loads every group from `$groups` and starts them.
    ///
    /// # Errors
    /// Read errors of the store, or a `$groups` record that does not
    /// decode (a corrupt registry is reported, not guessed at).
    pub fn open(feeds: Feeds) -> Result<Groups, ApiError> {
        let store = Arc::clone(&feeds.store);
        let (log, records) = RecordLog::<Record>::open(Arc::clone(&store), GROUPS_STREAM)?;
        let mut definitions: BTreeMap<String, Settings> = BTreeMap::new();
        for record in records {
            match record {
                Record::Created(settings) | Record::Updated(settings) => {
                    definitions.insert(settings.name.clone(), settings);
                }
                Record::Deleted { name, .. } => {
                    definitions.remove(&name);
                }
            }
        }
        let mut groups = BTreeMap::new();
        for (name, settings) in definitions {
            let running = start(&feeds, settings)?;
            groups.insert(name, running);
        }
        Ok(Groups { store, feeds, registry: Mutex::new(Registry { groups, log }), next_member: AtomicU64::new(1) })
    }

    /// Creates a group.
    ///
    /// # Errors
    /// 400 for bad settings, 409 `group_exists` for a name in use, store
    /// errors.
    pub async fn create(
        &self,
        name: &str,
        filter: Filter,
        start_from: StartFrom,
        tuning: &TuningRequest,
    ) -> Result<Settings, ApiError> {
        self.create_sharing(name, filter, start_from, tuning, Strategy::PerStream, None).await
    }

    /// Creates a group that shares its events by `strategy` and keeps
    /// `client_settings` for the client protocol that made it.
    ///
    /// # Errors
    /// As [`Groups::create`].
    pub async fn create_sharing(
        &self,
        name: &str,
        filter: Filter,
        start_from: StartFrom,
        tuning: &TuningRequest,
        strategy: Strategy,
        client_settings: Option<serde_json::Value>,
    ) -> Result<Settings, ApiError> {
        check_name(name)?;
        let mut registry = self.registry.lock().await;
        if registry.groups.contains_key(name) {
            return Err(ApiError::new(ErrorCode::GroupExists, format!("a group named {name:?} exists already")));
        }
        let start = match start_from {
            StartFrom::Beginning => 0,
            StartFrom::End => self.store.last_position().map_or(0, |p| p.0 + 1),
            StartFrom::Position(position) => position,
        };
        let id = registry.log.next_revision();
        let mut settings = Settings::new(name, id, filter, start, tuning)?;
        settings.strategy = strategy;
        settings.client_settings = client_settings;
        let parked = StreamName::system(settings.parked_stream())
            .map_err(|e| ApiError::new(ErrorCode::InvalidGroup, e.to_string()))?;
        settings.parked_from = match self.store.stream_info(&parked) {
            Ok(info) => info.last_revision.map_or(0, |r| r.0 + 1),
            Err(quipu_core::Error::StreamNotFound { .. }) => 0,
            Err(error) => return Err(error.into()),
        };
        registry.log.append(&Record::Created(settings.clone())).await?;
        let running = start_group(&self.feeds, settings.clone(), None);
        registry.groups.insert(name.to_string(), running);
        Ok(settings)
    }

    /// Changes a group's retry and flow settings.
    ///
    /// # Errors
    /// 404 for an unknown group, 400 for bad settings, store errors.
    pub async fn update(&self, name: &str, tuning: &TuningRequest) -> Result<Settings, ApiError> {
        self.reconfigure(name, tuning, None, None).await
    }

    /// Changes a group's retry and flow settings and, when given, its
    /// strategy and client settings. A new strategy restarts the group
    /// from its checkpoint: members are let go and join again.
    ///
    /// # Errors
    /// As [`Groups::update`].
    pub async fn reconfigure(
        &self,
        name: &str,
        tuning: &TuningRequest,
        strategy: Option<Strategy>,
        client_settings: Option<serde_json::Value>,
    ) -> Result<Settings, ApiError> {
        let mut registry = self.registry.lock().await;
        let current = registry.groups.get(name).ok_or_else(|| not_found(name))?;
        let mut settings = current.settings.retuned(tuning)?;
        settings.strategy = strategy.unwrap_or(settings.strategy);
        settings.client_settings = client_settings.or(settings.client_settings);
        let restart = settings.strategy != current.settings.strategy;
        registry.log.append(&Record::Updated(settings.clone())).await?;
        if restart {
            if let Some(running) = registry.groups.remove(name) {
                stop(&running).await;
            }
            let running = start(&self.feeds, settings.clone())?;
            registry.groups.insert(name.to_string(), running);
            return Ok(settings);
        }
        let running = registry.groups.get_mut(name).ok_or_else(|| not_found(name))?;
        running.settings = settings.clone();
        let _ = running.commands.send(Command::Retune(Box::new(settings.clone()))).await;
        Ok(settings)
    }

    /// Deletes a group: its task writes a last checkpoint and stops, its
    /// members' deliveries end.
    ///
    /// # Errors
    /// 404 for an unknown group, store errors.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut registry = self.registry.lock().await;
        let id = registry.groups.get(name).ok_or_else(|| not_found(name))?.settings.id;
        registry.log.append(&Record::Deleted { name: name.to_string(), id }).await?;
        if let Some(running) = registry.groups.remove(name) {
            stop(&running).await;
        }
        Ok(())
    }

    /// Every group with what it is doing, by name.
    pub async fn list(&self) -> Vec<GroupInfo> {
        let running: Vec<(Settings, mpsc::Sender<Command>)> = {
            let registry = self.registry.lock().await;
            registry.groups.values().map(|r| (r.settings.clone(), r.commands.clone())).collect()
        };
        let mut infos = Vec::new();
        for (settings, commands) in running {
            if let Some(info) = self.info_of(settings, &commands).await {
                infos.push(info);
            }
        }
        infos
    }

    /// One group with what it is doing.
    ///
    /// # Errors
    /// 404 for an unknown group.
    pub async fn info(&self, name: &str) -> Result<GroupInfo, ApiError> {
        let (settings, commands) = self.running(name).await?;
        self.info_of(settings, &commands).await.ok_or_else(|| not_found(name))
    }

    /// Schedules every parked event of the group not replayed yet.
    ///
    /// # Errors
    /// 404 for an unknown group, read errors.
    pub async fn replay_parked(&self, name: &str) -> Result<u64, ApiError> {
        self.replay_parked_up_to(name, None).await
    }

    /// Schedules the group's parked events not replayed yet, the oldest
    /// `limit` parked records of them when given.
    ///
    /// # Errors
    /// As [`Groups::replay_parked`].
    pub async fn replay_parked_up_to(&self, name: &str, limit: Option<u64>) -> Result<u64, ApiError> {
        let (_, commands) = self.running(name).await?;
        let (reply, answer) = oneshot::channel();
        commands.send(Command::ReplayParked { limit, reply }).await.map_err(|_| not_found(name))?;
        answer.await.map_err(|_| not_found(name))?
    }

    /// Joins group `name` as member `member`, holding at most
    /// `max_in_flight` events (0: the group's maximum).
    ///
    /// # Errors
    /// 404 for an unknown group, 400 for a bad member name.
    pub async fn join(&self, name: &str, member: &str, max_in_flight: u32) -> Result<Membership, ApiError> {
        if member.is_empty() || member.len() > 200 {
            return Err(ApiError::new(ErrorCode::InvalidMember, "a member name has 1 to 200 bytes"));
        }
        let (settings, commands) = self.running(name).await?;
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let (deliveries_sender, deliveries) = mpsc::unbounded_channel();
        commands
            .send(Command::Join {
                id,
                name: member.to_string(),
                max_in_flight: max_in_flight as usize,
                deliveries: deliveries_sender,
            })
            .await
            .map_err(|_| not_found(name))?;
        let message_timeout = std::time::Duration::from_millis(settings.message_timeout_ms);
        Ok(Membership { id, commands, deliveries: Some(deliveries), message_timeout, left: false })
    }

    /// Stops every group, each writing its last checkpoint.
    pub async fn shutdown(&self) {
        let mut registry = self.registry.lock().await;
        for running in std::mem::take(&mut registry.groups).into_values() {
            stop(&running).await;
        }
    }

    async fn running(&self, name: &str) -> Result<(Settings, mpsc::Sender<Command>), ApiError> {
        let registry = self.registry.lock().await;
        let running = registry.groups.get(name).ok_or_else(|| not_found(name))?;
        Ok((running.settings.clone(), running.commands.clone()))
    }

    async fn info_of(&self, settings: Settings, commands: &mpsc::Sender<Command>) -> Option<GroupInfo> {
        let (reply, answer) = oneshot::channel();
        commands.send(Command::Status(reply)).await.ok()?;
        let status = answer.await.ok()?;
        let head = self.store.last_position().map_or(Position(0), Position::next);
        Some(GroupInfo { settings, status, head })
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::GroupNotFound, format!("no group named {name:?}"))
}

/// Starts a loaded group from its last checkpoint.
fn start(feeds: &Feeds, settings: Settings) -> Result<Running, ApiError> {
    let stream = StreamName::system(settings.checkpoint_stream())
        .map_err(|e| ApiError::new(ErrorCode::InvalidGroup, e.to_string()))?;
    let checkpoint = last_checkpoint(&feeds.store, &stream)?;
    Ok(start_group(feeds, settings, checkpoint))
}

fn start_group(feeds: &Feeds, settings: Settings, checkpoint: Option<super::actor::Checkpoint>) -> Running {
    let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
    let actor = Actor::new(feeds, settings.clone(), checkpoint);
    tokio::spawn(actor.run(receiver));
    Running { settings, commands }
}

async fn stop(running: &Running) {
    let (reply, done) = oneshot::channel();
    if running.commands.send(Command::Stop(reply)).await.is_ok() {
        let _ = done.await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn member(commands: mpsc::Sender<Command>) -> Membership {
        let (_, deliveries) = mpsc::unbounded_channel();
        let message_timeout = std::time::Duration::from_secs(30);
        Membership { id: 7, commands, deliveries: Some(deliveries), message_timeout, left: false }
    }

    /// What the group's task received: acknowledged positions, and
    /// whether the member left as failed.
    fn received(receiver: &mut mpsc::Receiver<Command>) -> (Vec<u64>, Option<bool>) {
        let (mut acked, mut left) = (Vec::new(), None);
        while let Ok(command) = receiver.try_recv() {
            match command {
                Command::Ack { id: 7, positions } => acked.extend(positions.iter().map(|p| p.0)),
                Command::Leave { id: 7, failed } => left = Some(failed),
                _ => panic!("unexpected command"),
            }
        }
        (acked, left)
    }

    #[tokio::test]
    async fn a_member_answering_faster_than_its_group_waits_for_room_and_loses_nothing() {
        let (commands, mut receiver) = mpsc::channel(COMMANDS_MAX);
        let member = member(commands);
        for n in 0..COMMANDS_MAX as u64 {
            // Unconstrained: tokio's cooperative budget would make a later send yield.
            tokio::task::unconstrained(member.ack(vec![Position(n)])).now_or_never().expect("room in the queue");
        }
        let mut one_more = Box::pin(tokio::task::unconstrained(member.ack(vec![Position(COMMANDS_MAX as u64)])));
        assert!((&mut one_more).now_or_never().is_none(), "a full queue holds the answer back");
        let first = receiver.recv().await;
        assert!(matches!(first, Some(Command::Ack { id: 7, .. })));
        one_more.await;
        let (acked, left) = received(&mut receiver);
        let expected: Vec<u64> = (1..=COMMANDS_MAX as u64).collect();
        assert_eq!(acked, expected, "every answer arrives, in order");
        assert_eq!(left, None);
        drop(member);
        assert_eq!(received(&mut receiver), (Vec::new(), Some(true)), "a dropped member leaves as failed");
    }

    #[tokio::test]
    async fn a_member_dropped_while_its_group_is_behind_still_leaves() {
        let (commands, mut receiver) = mpsc::channel(COMMANDS_MAX);
        let member = member(commands);
        for n in 0..COMMANDS_MAX as u64 {
            // Unconstrained: tokio's cooperative budget would make a later send yield.
            tokio::task::unconstrained(member.ack(vec![Position(n)])).now_or_never().expect("room in the queue");
        }
        drop(member);
        let (acked, left) = received(&mut receiver);
        assert_eq!(acked.len(), COMMANDS_MAX);
        assert_eq!(left, None, "the leave waits for room");
        let leave = tokio::time::timeout(std::time::Duration::from_secs(10), receiver.recv()).await;
        assert!(
            matches!(leave, Ok(Some(Command::Leave { id: 7, failed: true }))),
            "the leave arrives once there is room"
        );
    }
}
