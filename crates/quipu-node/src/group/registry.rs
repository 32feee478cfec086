//! Every consumer group of a server: created, updated, moved and deleted
//! through records in the system stream `$groups` (so they outlive
//! restarts and travel with the log), each run by its own [`Actor`].
//!
//! Changes are serialized and each `$groups` append expects the revision
//! the registry last saw, so two servers on one log could not both create
//! the same group.
//!
//! In cluster mode every node holds `$groups` and follows it (see
//! [`crate::refresher`]), but a group runs on one node only, its home
//! ([`Settings::home`], the node that created it until it is moved): two
//! actors of one group would deliver the same events twice and write the
//! same checkpoint stream. Members join on the home; elsewhere a join is
//! refused with `group_elsewhere`, naming the home. A move is a change of
//! home: the old home stops its actor (writing its last checkpoint) when
//! it takes the move in, the new one starts from the last checkpoint, so
//! events in flight at the move may be delivered again (at least once,
//! as after a restart). When its home is down, another node takes the
//! group over by itself ([`super::failover`]); a move by hand works too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quipu_core::{Position, Store, StreamName};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::actor::{Actor, Command, Feeds, Status, last_checkpoint};
use super::dispatcher::{Delivery, MemberId, NackAction, Strategy};
use super::settings::{Filter, GROUP_NAME_BYTES_MAX, Settings, StartFrom, TuningRequest, check_name};
use crate::folded_log::{Fold, FoldedLog};
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
    /// Whether the group's actor runs on this node. When not (in a
    /// cluster, the group's home is another node) `status` holds only the
    /// last checkpoint its home wrote: no members, nothing in flight.
    pub running_here: bool,
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

/// Every group `$groups` defines, folded in log order.
#[derive(Default)]
struct Definitions {
    groups: BTreeMap<String, Settings>,
    /// Records folded so far: the revision the next record takes, which
    /// is the id a group created by it gets.
    revision_next: u64,
}

impl Fold<Record> for Definitions {
    fn fold(&mut self, record: Record) {
        self.revision_next += 1;
        match record {
            Record::Created(settings) | Record::Updated(settings) => {
                self.groups.insert(settings.name.clone(), settings);
            }
            Record::Deleted { name, .. } => {
                self.groups.remove(&name);
            }
        }
    }
}

/// The groups whose actor runs on this node.
struct Actors {
    by_name: BTreeMap<String, Running>,
    /// Set by [`Groups::shutdown`]: no actor starts again.
    stopped: bool,
}

/// The server's consumer groups.
///
/// Their definitions are the fold of `$groups` ([`FoldedLog`]); which of
/// them run here follows the definitions: after every change made here
/// and every [`Groups::refresh`], actors start for the groups that run
/// here and have none, stop for those that no longer do, and are retuned
/// (or restarted, for a new strategy) for those whose settings changed.
pub struct Groups {
    store: Arc<Store>,
    feeds: Feeds,
    /// This node's name in a cluster; `None` when it stands alone (it
    /// then runs every group).
    node: Option<String>,
    folded: FoldedLog<Record, Definitions>,
    actors: Mutex<Actors>,
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
    /// Loads every group from `$groups` and starts them, as a node that
    /// stands alone.
    ///
    /// # Errors
    /// Read errors of the store, or a `$groups` record that does not
    /// decode (a corrupt registry is reported, not guessed at).
    pub fn open(feeds: Feeds) -> Result<Groups, ApiError> {
        Groups::open_as(feeds, None)
    }

    /// Loads every group from `$groups` and starts those that run on
    /// this node: in a cluster (`node` is this node's name) those whose
    /// home is `node`; alone (`None`) every group.
    ///
    /// # Errors
    /// As [`Groups::open`].
    pub fn open_as(feeds: Feeds, node: Option<String>) -> Result<Groups, ApiError> {
        let store = Arc::clone(&feeds.store);
        let folded = FoldedLog::<Record, Definitions>::open(Arc::clone(&store), GROUPS_STREAM)?;
        let here: Vec<Settings> =
            folded.state().groups.values().filter(|s| runs_on(s, node.as_deref())).cloned().collect();
        let mut by_name = BTreeMap::new();
        for settings in here {
            let name = settings.name.clone();
            by_name.insert(name, start(&feeds, settings)?);
        }
        let actors = Mutex::new(Actors { by_name, stopped: false });
        Ok(Groups { store, feeds, node, folded, actors, next_member: AtomicU64::new(1) })
    }

    /// Takes in the groups other nodes created, changed, moved or deleted
    /// since, and starts or stops this node's actors to match.
    ///
    /// # Errors
    /// As [`Groups::open`] (nothing changes then), or the first actor
    /// that could not start (the others are started).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.folded.refresh().await?;
        self.follow().await
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
    /// `client_settings` for the client protocol that made it. In a
    /// cluster its home is this node.
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
        let mut writer = self.folded.writer().await?;
        if writer.state().groups.contains_key(name) {
            return Err(ApiError::new(ErrorCode::GroupExists, format!("a group named {name:?} exists already")));
        }
        let start = match start_from {
            StartFrom::Beginning => 0,
            StartFrom::End => self.store.last_position().map_or(0, |p| p.0 + 1),
            StartFrom::Position(position) => position,
        };
        let id = writer.state().revision_next;
        let mut settings = Settings::new(name, id, filter, start, tuning)?;
        settings.strategy = strategy;
        settings.client_settings = client_settings;
        settings.home.clone_from(&self.node);
        let parked = StreamName::system(settings.parked_stream())
            .map_err(|e| ApiError::new(ErrorCode::InvalidGroup, e.to_string()))?;
        settings.parked_from = match self.store.stream_info(&parked) {
            Ok(info) => info.last_revision.map_or(0, |r| r.0 + 1),
            Err(quipu_core::Error::StreamNotFound { .. }) => 0,
            Err(error) => return Err(error.into()),
        };
        writer.append(Record::Created(settings.clone())).await?;
        drop(writer);
        self.follow().await?;
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
        let mut writer = self.folded.writer().await?;
        let current = writer.state().groups.get(name).cloned().ok_or_else(|| not_found(name))?;
        let mut settings = current.retuned(tuning)?;
        settings.strategy = strategy.unwrap_or(settings.strategy);
        settings.client_settings = client_settings.or(settings.client_settings);
        writer.append(Record::Updated(settings.clone())).await?;
        drop(writer);
        self.follow().await?;
        Ok(settings)
    }

    /// Moves group `name` to cluster node `to`: its home becomes `to`.
    /// The old home stops its actor (writing a last checkpoint) when it
    /// takes the move in; `to` starts one from the last checkpoint when it
    /// does. Delivery stays at least once: events out to members of the
    /// old home and not acknowledged before it stopped are delivered
    /// again by the new one.
    ///
    /// # Errors
    /// 400 `invalid_group` for an empty `to` (or over
    /// [`GROUP_NAME_BYTES_MAX`] bytes) or on a node that stands alone
    /// (it runs every group), 404 for an unknown group, store errors.
    pub async fn move_home(&self, name: &str, to: &str) -> Result<Settings, ApiError> {
        if to.is_empty() || to.len() > GROUP_NAME_BYTES_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidGroup,
                format!("a node name has 1 to {GROUP_NAME_BYTES_MAX} bytes"),
            )
            .with("field", serde_json::json!("to")));
        }
        if self.node.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidGroup,
                "this node stands alone and runs every group; groups move between the nodes of a cluster",
            ));
        }
        let mut writer = self.folded.writer().await?;
        let mut settings = writer.state().groups.get(name).cloned().ok_or_else(|| not_found(name))?;
        if settings.home.as_deref() == Some(to) {
            return Ok(settings);
        }
        settings.home = Some(to.to_string());
        writer.append(Record::Updated(settings.clone())).await?;
        drop(writer);
        self.follow().await?;
        Ok(settings)
    }

    /// Moves group `name` to this node if its home is still `from` (a
    /// node that is down, `None` for a group without a home); answers
    /// whether it moved. The `$groups` record expects the revision this
    /// node last saw, so of two nodes taking one group at once the log
    /// takes one (the other gets a conflict, or finds the home moved and
    /// changes nothing). See [`super::failover`].
    ///
    /// # Errors
    /// Store errors, a conflict among them.
    pub async fn take_over(&self, name: &str, from: Option<&str>) -> Result<bool, ApiError> {
        let Some(node) = self.node.clone() else {
            return Ok(false);
        };
        let mut writer = self.folded.writer().await?;
        let current = writer.state().groups.get(name).cloned();
        let Some(mut settings) = current.filter(|s| s.home.as_deref() == from) else {
            return Ok(false);
        };
        settings.home = Some(node);
        writer.append(Record::Updated(settings)).await?;
        drop(writer);
        self.follow().await?;
        Ok(true)
    }

    /// Every group's name and home, as this node last folded `$groups`.
    #[must_use]
    pub fn homes(&self) -> Vec<(String, Option<String>)> {
        self.folded.state().groups.values().map(|s| (s.name.clone(), s.home.clone())).collect()
    }

    /// This node's name in its cluster; `None` alone.
    #[must_use]
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Deletes a group: its task writes a last checkpoint and stops, its
    /// members' deliveries end (on its home, when that takes the delete
    /// in).
    ///
    /// # Errors
    /// 404 for an unknown group, store errors.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut writer = self.folded.writer().await?;
        let id = writer.state().groups.get(name).ok_or_else(|| not_found(name))?.id;
        writer.append(Record::Deleted { name: name.to_string(), id }).await?;
        drop(writer);
        self.follow().await
    }

    /// Every group with what it is doing, by name. A group that runs on
    /// another node shows its settings and last checkpoint only.
    pub async fn list(&self) -> Vec<GroupInfo> {
        let definitions: Vec<Settings> = self.folded.state().groups.values().cloned().collect();
        let mut infos = Vec::new();
        for settings in definitions {
            if let Ok(info) = self.info_of(settings).await {
                infos.push(info);
            }
        }
        infos
    }

    /// One group with what it is doing; on a node that is not its home,
    /// its settings and last checkpoint only.
    ///
    /// # Errors
    /// 404 for an unknown group, read errors.
    pub async fn info(&self, name: &str) -> Result<GroupInfo, ApiError> {
        let settings = self.folded.state().groups.get(name).cloned().ok_or_else(|| not_found(name))?;
        self.info_of(settings).await
    }

    /// Schedules every parked event of the group not replayed yet.
    ///
    /// # Errors
    /// 404 for an unknown group, 409 `group_elsewhere` on a node that is
    /// not its home, read errors.
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
    /// 404 for an unknown group, 400 for a bad member name, 409
    /// `group_elsewhere` naming the group's home when this node is not it.
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

    /// Stops every group, each writing its last checkpoint; none starts
    /// again.
    pub async fn shutdown(&self) {
        let mut actors = self.actors.lock().await;
        actors.stopped = true;
        for running in std::mem::take(&mut actors.by_name).into_values() {
            stop(&running).await;
        }
    }

    /// Starts, stops, retunes and restarts actors so that exactly the
    /// groups defined now that run on this node have one, with their
    /// current settings. Whoever calls it last sees the newest
    /// definitions, so concurrent calls end where the log stands.
    async fn follow(&self) -> Result<(), ApiError> {
        let mut actors = self.actors.lock().await;
        if actors.stopped {
            return Ok(());
        }
        let wanted: BTreeMap<String, Settings> = self
            .folded
            .state()
            .groups
            .values()
            .filter(|s| runs_on(s, self.node.as_deref()))
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let stale: Vec<String> = actors
            .by_name
            .iter()
            .filter(|(name, running)| {
                // Same group (not one deleted and created again) with the
                // same way of sharing: retuned in place, below.
                wanted.get(*name).is_none_or(|w| w.id != running.settings.id || w.strategy != running.settings.strategy)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(running) = actors.by_name.remove(&name) {
                stop(&running).await;
            }
        }
        let mut failed = None;
        for (name, settings) in wanted {
            if let Some(running) = actors.by_name.get_mut(&name) {
                if running.settings != settings {
                    running.settings = settings.clone();
                    let _ = running.commands.send(Command::Retune(Box::new(settings))).await;
                }
                continue;
            }
            match start(&self.feeds, settings) {
                Ok(running) => drop(actors.by_name.insert(name, running)),
                Err(error) => {
                    tracing::warn!(group = %name, message = %error.message, "the group could not start");
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The actor of group `name` on this node.
    async fn running(&self, name: &str) -> Result<(Settings, mpsc::Sender<Command>), ApiError> {
        if let Some(running) = self.actors.lock().await.by_name.get(name) {
            return Ok((running.settings.clone(), running.commands.clone()));
        }
        match self.folded.state().groups.get(name) {
            Some(settings) => Err(elsewhere(settings)),
            None => Err(not_found(name)),
        }
    }

    async fn info_of(&self, settings: Settings) -> Result<GroupInfo, ApiError> {
        let head = self.store.last_position().map_or(Position(0), Position::next);
        let commands = self.actors.lock().await.by_name.get(&settings.name).map(|r| r.commands.clone());
        let Some(commands) = commands else {
            let status = status_elsewhere(&self.store, &settings)?;
            return Ok(GroupInfo { settings, status, head, running_here: false });
        };
        let (reply, answer) = oneshot::channel();
        let name = settings.name.clone();
        commands.send(Command::Status(reply)).await.map_err(|_| not_found(&name))?;
        let status = answer.await.map_err(|_| not_found(&name))?;
        Ok(GroupInfo { settings, status, head, running_here: true })
    }
}

/// Whether group `settings` runs on `node`: alone (`None`) every group
/// does; in a cluster, those whose home is `node`.
fn runs_on(settings: &Settings, node: Option<&str>) -> bool {
    node.is_none_or(|node| settings.home.as_deref() == Some(node))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::GroupNotFound, format!("no group named {name:?}"))
}

/// The answer to a member of a group whose actor runs on another node.
fn elsewhere(settings: &Settings) -> ApiError {
    let name = &settings.name;
    match &settings.home {
        Some(home) => ApiError::new(
            ErrorCode::GroupElsewhere,
            format!("group {name} runs on node {home}; connect its members there"),
        )
        .with("home", serde_json::json!(home)),
        None => ApiError::new(
            ErrorCode::GroupElsewhere,
            format!("group {name} has no home node and runs nowhere in this cluster; move it to a node first"),
        ),
    }
}

/// What a node that does not run a group knows of it: its last
/// checkpoint (as its home last wrote it), nothing live.
fn status_elsewhere(store: &Store, settings: &Settings) -> Result<Status, ApiError> {
    let stream = StreamName::system(settings.checkpoint_stream())
        .map_err(|e| ApiError::new(ErrorCode::InvalidGroup, e.to_string()))?;
    let checkpoint = last_checkpoint(store, &stream)?.filter(|c| c.group_id == settings.id);
    Ok(Status {
        checkpoint: Position(checkpoint.map_or(settings.start, |c| c.position)),
        in_flight: 0,
        parking: 0,
        retrying: 0,
        buffered: 0,
        parked: 0,
        members: Vec::new(),
    })
}

/// Starts a loaded group from its last checkpoint.
fn start(feeds: &Feeds, settings: Settings) -> Result<Running, ApiError> {
    let stream = StreamName::system(settings.checkpoint_stream())
        .map_err(|e| ApiError::new(ErrorCode::InvalidGroup, e.to_string()))?;
    let checkpoint = last_checkpoint(&feeds.store, &stream)?;
    let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
    let actor = Actor::new(feeds, settings.clone(), checkpoint);
    tokio::spawn(actor.run(receiver));
    Ok(Running { settings, commands })
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

/// Two cluster nodes, stood for by two [`crate::Node`]s over one replica's
/// store (each node's store holds every record), each with its own name.
#[cfg(test)]
mod cluster_tests {
    use std::time::Duration;

    use quipu_core::{AppendRequest, EventType, ExpectedRevision, ProposedEvent};
    use tokio::sync::watch;

    use super::*;
    use crate::Node;
    use crate::node::tests::replica;

    fn append(store: &Store, stream: &str) {
        let stream = StreamName::new(stream).expect("valid");
        let event = ProposedEvent::new(EventType::new("Placed").expect("valid"), b"{}".to_vec());
        store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
    }

    /// The next delivery's stream, within five seconds.
    async fn next(deliveries: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
            .await
            .expect("a delivery within 5 s")
            .expect("the group is running")
    }

    /// Nodes `node-a` and `node-b` over one replica's store (in a
    /// directory dropped with the first field).
    fn two_nodes() -> (tempfile::TempDir, Arc<Store>, Node, Node) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = replica(dir.path());
        let a = Node::open_shared_as(Arc::clone(&store), Some("node-a".into())).expect("open a");
        let b = Node::open_shared_as(Arc::clone(&store), Some("node-b".into())).expect("open b");
        (dir, store, a, b)
    }

    fn orders() -> Filter {
        Filter { category: Some("order".into()), ..Filter::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_runs_on_its_home_node_and_moves_by_hand() {
        let (_dir, store, a, b) = two_nodes();
        let t = TuningRequest::default();
        let created = a.groups.create("billing", orders(), StartFrom::Beginning, &t).await.expect("create");
        assert_eq!(created.home.as_deref(), Some("node-a"), "a group's home is the node that creates it");

        b.groups.refresh().await.expect("refresh b");
        let seen = b.groups.info("billing").await.expect("b knows the group");
        assert_eq!(seen.settings.home.as_deref(), Some("node-a"));
        assert!(!seen.running_here, "b does not run a's group");
        assert_eq!(b.groups.list().await.len(), 1);
        let refused = b.groups.join("billing", "m1", 0).await.err().expect("join on b refused");
        assert_eq!(refused.code, ErrorCode::GroupElsewhere);
        assert!(refused.message.contains("node-a"), "{}", refused.message);

        append(&store, "order-1");
        append(&store, "order-1");
        let mut on_a = a.groups.join("billing", "m1", 0).await.expect("join on a");
        assert!(a.groups.info("billing").await.expect("info").running_here);
        let mut deliveries = on_a.take_deliveries();
        // One stream's events go one at a time: each after the last is
        // acknowledged.
        let first = next(&mut deliveries).await;
        on_a.ack(vec![first.event.position]).await;
        let second = next(&mut deliveries).await;
        on_a.ack(vec![second.event.position]).await;

        let moved = a.groups.move_home("billing", "node-b").await.expect("move");
        assert_eq!(moved.home.as_deref(), Some("node-b"));
        tokio::time::timeout(Duration::from_secs(5), on_a.group_stopped()).await.expect("a's actor stopped");
        assert!(deliveries.recv().await.is_none(), "a's member's stream ended");
        let refused = a.groups.join("billing", "m1", 0).await.err().expect("join on a refused after the move");
        assert!(refused.message.contains("node-b"), "{}", refused.message);

        append(&store, "order-2");
        b.groups.refresh().await.expect("refresh b");
        let mut on_b = b.groups.join("billing", "m2", 0).await.expect("join on b after the move");
        let mut deliveries = on_b.take_deliveries();
        let third = next(&mut deliveries).await;
        assert_eq!(third.event.stream.as_str(), "order-2", "b starts from a's last checkpoint");
        assert!(third.event.position > second.event.position);

        b.groups.delete("billing").await.expect("delete on b");
        tokio::time::timeout(Duration::from_secs(5), on_b.group_stopped()).await.expect("b's actor stopped");
        a.groups.refresh().await.expect("refresh a");
        let gone = a.groups.info("billing").await.expect_err("a forgot the group");
        assert_eq!(gone.code, ErrorCode::GroupNotFound);
        drop((on_a, on_b));
        a.stop().await;
        b.stop().await;
    }

    /// The refresher starts the group on its new home without being asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_refresher_starts_a_group_moved_here() {
        let (_dir, _store, a, b) = two_nodes();
        let t = TuningRequest::default();
        a.groups.create("billing", orders(), StartFrom::Beginning, &t).await.expect("create");
        a.groups.move_home("billing", "node-b").await.expect("move");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !b.groups.info("billing").await.is_ok_and(|info| info.running_here) {
            assert!(tokio::time::Instant::now() < deadline, "b did not start the group within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.stop().await;
        b.stop().await;
    }

    /// A take-over moves the group only from the home it names, so of two
    /// nodes taking one group the second changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_take_over_moves_a_group_only_from_the_home_it_names() {
        let (_dir, _store, a, b) = two_nodes();
        let t = TuningRequest::default();
        a.groups.create("billing", orders(), StartFrom::Beginning, &t).await.expect("create");
        b.groups.refresh().await.expect("refresh b");
        assert!(!b.groups.take_over("billing", Some("node-c")).await.expect("take"), "its home is not node-c");
        assert!(!b.groups.take_over("missing", Some("node-a")).await.expect("take"), "no such group");
        assert!(b.groups.take_over("billing", Some("node-a")).await.expect("take"), "from node-a");
        assert!(b.groups.info("billing").await.expect("info").running_here);
        a.groups.refresh().await.expect("refresh a");
        assert!(!a.groups.take_over("billing", Some("node-a")).await.expect("take"), "taken already");
        assert_eq!(a.groups.homes(), vec![("billing".to_string(), Some("node-b".to_string()))]);
        a.stop().await;
        b.stop().await;
    }

    /// The failover task takes a group whose home is missing from the
    /// nodes seen up, on the node that is its heir, and nothing before
    /// the delay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_failover_moves_a_group_whose_home_is_seen_down() {
        let (_dir, _store, a, b) = two_nodes();
        let t = TuningRequest::default();
        a.groups.create("billing", orders(), StartFrom::Beginning, &t).await.expect("create");
        let up = |names: &[&str]| Some(names.iter().map(|n| (*n).to_string()).collect());
        let (nodes, seen) = watch::channel(up(&["node-a", "node-b"]));
        b.fail_over_groups(seen, Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        b.groups.refresh().await.expect("refresh b");
        assert_eq!(b.groups.homes()[0].1.as_deref(), Some("node-a"), "node-a is up");
        nodes.send_replace(up(&["node-b"]));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !b.groups.info("billing").await.is_ok_and(|info| info.running_here) {
            assert!(tokio::time::Instant::now() < deadline, "b did not take the group within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.groups.homes()[0].1.as_deref(), Some("node-b"));
        a.stop().await;
        b.stop().await;
    }

    /// A node alone runs every group, its name (if any) aside.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_alone_runs_every_group_and_moves_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), quipu_core::Options::default()).expect("open"));
        let node = Node::open_shared_as(Arc::clone(&store), Some("node-a".into())).expect("open");
        let t = TuningRequest::default();
        let created = node.groups.create("billing", orders(), StartFrom::Beginning, &t).await.expect("create");
        assert_eq!(created.home, None, "alone, a group has no home");
        append(&store, "order-1");
        let mut member = node.groups.join("billing", "m1", 0).await.expect("join");
        let mut deliveries = member.take_deliveries();
        assert_eq!(next(&mut deliveries).await.event.stream.as_str(), "order-1");
        let refused = node.groups.move_home("billing", "node-b").await.expect_err("no move alone");
        assert_eq!(refused.code, ErrorCode::InvalidGroup);
        drop(member);
        node.stop().await;
    }
}
