//! The group coordinator: Kafka's consumer-group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup) in memory, with committed offsets
//! kept durably by [`crate::offset_store`].
//!
//! What it promises:
//! - A rebalance starts when a member joins, leaves, or misses its session
//!   timeout. Members learn of it from their heartbeats
//!   (`REBALANCE_IN_PROGRESS`) and join again; the rebalance completes once
//!   every member has, or after the rebalance timeout (those that did not
//!   are dropped).
//! - Each completed join is a new generation. The first member to join
//!   leads it: it gets every member's metadata, chooses the assignment
//!   (the client's assignor, as with Kafka), and sends it with its
//!   SyncGroup; each member's SyncGroup answers its own part.
//! - Stale generations and unknown members get `ILLEGAL_GENERATION` and
//!   `UNKNOWN_MEMBER_ID`. Groups live in memory: after a restart members
//!   join again, and their committed offsets are still there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::{Mutex, oneshot};

/// How often sessions and rebalance deadlines are checked.
pub const TICK: Duration = Duration::from_millis(200);

/// What a member gets when a join completes.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Kafka error code (0: joined).
    pub error: i16,
    /// The generation.
    pub generation: i32,
    /// The protocol (assignor) chosen.
    pub protocol: Option<String>,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member and its metadata (the leader's answer only).
    pub members: Vec<(String, Bytes)>,
}

/// What a member gets when the leader's assignment is in.
#[derive(Debug, Clone)]
pub struct Synced {
    /// Kafka error code (0: assigned).
    pub error: i16,
    /// The protocol.
    pub protocol: Option<String>,
    /// The protocol type.
    pub protocol_type: String,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The group.
    pub group: String,
    /// Empty for a new member.
    pub member_id: String,
    /// The client's id (a member id starts with it).
    pub client_id: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members.
    pub rebalance_timeout: Duration,
    /// `consumer` for consumers.
    pub protocol_type: String,
    /// Protocols (assignors) the member supports, with its metadata for each.
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    seen: Instant,
    joining: Option<oneshot::Sender<Joined>>,
    syncing: Option<oneshot::Sender<Synced>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No members.
    Empty,
    /// Waiting for members to join, until the deadline.
    Rebalancing { deadline: Instant },
    /// Joined; waiting for the leader's assignment.
    Assigning,
    /// Assigned.
    Stable,
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    assignments: BTreeMap<String, Bytes>,
    next_member: u64,
}

impl Group {
    fn new() -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            assignments: BTreeMap::new(),
            next_member: 0,
        }
    }

    /// Starts a rebalance (or keeps the one going).
    fn rebalance(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            return;
        }
        if !matches!(self.state, State::Rebalancing { .. }) {
            let wait = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
            self.state = State::Rebalancing { deadline: now + wait };
            self.assignments.clear();
            // Members waiting for an assignment will not get one.
            let answer = self.sync_error(Some(ResponseError::RebalanceInProgress));
            for member in self.members.values_mut() {
                if let Some(syncing) = member.syncing.take() {
                    let _ = syncing.send(answer.clone());
                }
            }
        }
    }

    /// A SyncGroup answer without an assignment (`None`: no error).
    fn sync_error(&self, error: Option<ResponseError>) -> Synced {
        Synced {
            error: error.map_or(0, |e| e.code()),
            protocol: self.protocol.clone(),
            protocol_type: self.protocol_type.clone(),
            assignment: Bytes::new(),
        }
    }

    /// Completes the rebalance when every member has joined, or when
    /// `force` (the deadline passed: members that did not join go).
    fn maybe_complete(&mut self, force: bool) {
        if !matches!(self.state, State::Rebalancing { .. }) {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joining.is_some());
        if !all_joined && !force {
            return;
        }
        self.members.retain(|_, m| m.joining.is_some());
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            return;
        }
        self.generation += 1;
        self.protocol = self.common_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone();
        let everyone: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m.protocols.iter().find(|(p, _)| Some(p) == protocol.as_ref()).map(|(_, b)| b.clone());
                (id.clone(), metadata.unwrap_or_default())
            })
            .collect();
        for (id, member) in &mut self.members {
            if let Some(joining) = member.joining.take() {
                let _ = joining.send(Joined {
                    error: 0,
                    generation: self.generation,
                    protocol: protocol.clone(),
                    protocol_type: self.protocol_type.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader { everyone.clone() } else { Vec::new() },
                });
            }
        }
        self.state = State::Assigning;
    }

    /// The first protocol of the leader's (or first member's) list that
    /// every member supports.
    fn common_protocol(&self) -> Option<String> {
        let first = self.leader.as_ref().and_then(|l| self.members.get(l)).or_else(|| self.members.values().next())?;
        first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *name)))
            .cloned()
    }
}

/// Every group of the door.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
}

impl Coordinator {
    /// A coordinator with no groups.
    #[must_use]
    pub fn new() -> Arc<Coordinator> {
        Arc::new(Coordinator::default())
    }

    /// Joins (or rejoins) a member; resolves when the join completes.
    pub async fn join(&self, request: JoinRequest) -> Joined {
        let refused = |error: ResponseError, member_id: String| Joined {
            error: error.code(),
            generation: -1,
            protocol: None,
            protocol_type: request.protocol_type.clone(),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        };
        if request.group.is_empty() {
            return refused(ResponseError::InvalidGroupId, request.member_id);
        }
        if request.protocols.is_empty() {
            return refused(ResponseError::InconsistentGroupProtocol, request.member_id);
        }
        let (sender, receiver) = oneshot::channel();
        {
            let mut groups = self.groups.lock().await;
            let group = groups.entry(request.group.clone()).or_insert_with(Group::new);
            let now = Instant::now();
            let member_id = if request.member_id.is_empty() {
                group.next_member += 1;
                format!("{}-{}-{}", request.client_id, group.generation, group.next_member)
            } else if group.members.contains_key(&request.member_id) {
                request.member_id.clone()
            } else {
                return refused(ResponseError::UnknownMemberId, request.member_id);
            };
            if !group.members.is_empty() && group.protocol_type != request.protocol_type {
                return refused(ResponseError::InconsistentGroupProtocol, member_id);
            }
            group.protocol_type = request.protocol_type.clone();
            let member = group.members.entry(member_id).or_insert_with(|| Member {
                client_id: request.client_id.clone(),
                protocols: Vec::new(),
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                seen: now,
                joining: None,
                syncing: None,
            });
            member.protocols = request.protocols.clone();
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.seen = now;
            member.joining = Some(sender);
            debug_assert!(!member.client_id.is_empty() || request.client_id.is_empty());
            group.rebalance(now);
            group.maybe_complete(false);
        }
        receiver.await.unwrap_or_else(|_| refused(ResponseError::RebalanceInProgress, String::new()))
    }

    /// Takes the leader's assignment (when it is the leader's SyncGroup)
    /// and resolves with this member's part once it is in.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Synced {
        let (sender, receiver) = oneshot::channel();
        {
            let mut groups = self.groups.lock().await;
            let Some(group) = groups.get_mut(group_id) else {
                return Group::new().sync_error(Some(ResponseError::UnknownMemberId));
            };
            if !group.members.contains_key(member_id) {
                return group.sync_error(Some(ResponseError::UnknownMemberId));
            }
            if generation != group.generation {
                return group.sync_error(Some(ResponseError::IllegalGeneration));
            }
            match group.state {
                State::Rebalancing { .. } | State::Empty => {
                    return group.sync_error(Some(ResponseError::RebalanceInProgress));
                }
                State::Stable => {
                    let assignment = group.assignments.get(member_id).cloned().unwrap_or_default();
                    return Synced { assignment, ..group.sync_error(None) };
                }
                State::Assigning => {}
            }
            if group.leader.as_deref() == Some(member_id) {
                group.assignments = assignments.into_iter().collect();
                group.state = State::Stable;
                let answers: Vec<(String, Synced)> = group
                    .members
                    .keys()
                    .map(|id| {
                        let assignment = group.assignments.get(id).cloned().unwrap_or_default();
                        (id.clone(), Synced { assignment, ..group.sync_error(None) })
                    })
                    .collect();
                for (id, answer) in answers {
                    if let Some(syncing) = group.members.get_mut(&id).and_then(|m| m.syncing.take()) {
                        let _ = syncing.send(answer);
                    }
                }
                let assignment = group.assignments.get(member_id).cloned().unwrap_or_default();
                touch(group, member_id);
                return Synced { assignment, ..group.sync_error(None) };
            }
            if let Some(member) = group.members.get_mut(member_id) {
                member.syncing = Some(sender);
                member.seen = Instant::now();
            }
        }
        receiver.await.unwrap_or_else(|_| Group::new().sync_error(Some(ResponseError::RebalanceInProgress)))
    }

    /// A member's heartbeat: the error to answer (`None`: all is well).
    pub async fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> Option<ResponseError> {
        let mut groups = self.groups.lock().await;
        let Some(group) = groups.get_mut(group_id) else { return Some(ResponseError::UnknownMemberId) };
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        touch(group, member_id);
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        match group.state {
            State::Rebalancing { .. } => Some(ResponseError::RebalanceInProgress),
            _ => None,
        }
    }

    /// Members leave; each one's error (`None`: it left).
    pub async fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Option<ResponseError>> {
        let mut groups = self.groups.lock().await;
        let Some(group) = groups.get_mut(group_id) else {
            return member_ids.iter().map(|_| Some(ResponseError::UnknownMemberId)).collect();
        };
        let answers = member_ids
            .iter()
            .map(|id| if group.members.remove(id).is_some() { None } else { Some(ResponseError::UnknownMemberId) })
            .collect();
        group.rebalance(Instant::now());
        group.maybe_complete(false);
        answers
    }

    /// Whether (`None`) or why not `member_id` of `generation` may commit offsets for
    /// `group_id` (a generation below 0 is a simple consumer, outside any
    /// group membership).
    pub async fn may_commit(&self, group_id: &str, member_id: &str, generation: i32) -> Option<ResponseError> {
        if generation < 0 {
            return None;
        }
        let groups = self.groups.lock().await;
        match groups.get(group_id) {
            Some(group) if !group.members.contains_key(member_id) => Some(ResponseError::UnknownMemberId),
            Some(group) if group.generation != generation => Some(ResponseError::IllegalGeneration),
            Some(_) => None,
            None => Some(ResponseError::UnknownMemberId),
        }
    }

    /// Drops members whose session expired and completes rebalances whose
    /// deadline passed; run every [`TICK`].
    pub async fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock().await;
        for group in groups.values_mut() {
            let before = group.members.len();
            group.members.retain(|_, m| m.joining.is_some() || now.duration_since(m.seen) <= m.session_timeout);
            if group.members.len() != before {
                group.rebalance(now);
            }
            if let State::Rebalancing { deadline } = group.state {
                group.maybe_complete(now >= deadline);
            }
        }
    }
}

fn touch(group: &mut Group, member_id: &str) {
    if let Some(member) = group.members.get_mut(member_id) {
        member.seen = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group: "g".into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            session_timeout: Duration::from_millis(300),
            rebalance_timeout: Duration::from_secs(5),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta")), ("roundrobin".into(), Bytes::new())],
        }
    }

    #[tokio::test]
    async fn a_second_member_makes_the_first_rejoin_then_both_get_their_assignment() {
        let coordinator = Coordinator::new();
        let first = coordinator.join(join_request("")).await;
        assert_eq!((first.error, first.generation), (0, 1));
        assert_eq!(first.leader, first.member_id, "the only member leads");
        assert_eq!(first.members.len(), 1);
        assert_eq!(first.protocol.as_deref(), Some("range"));
        let synced = coordinator.sync("g", &first.member_id, 1, vec![(first.member_id.clone(), "p0".into())]).await;
        assert_eq!((synced.error, synced.assignment.as_ref()), (0, b"p0".as_slice()));

        // A second member joins: the first hears of it from its heartbeat.
        let joining = {
            let coordinator = Arc::clone(&coordinator);
            tokio::spawn(async move { coordinator.join(join_request("")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let code = coordinator.heartbeat("g", &first.member_id, 1).await;
        assert_eq!(code, Some(ResponseError::RebalanceInProgress));
        let rejoined = coordinator.join(join_request(&first.member_id)).await;
        let second = joining.await.expect("join task");
        assert_eq!((rejoined.generation, second.generation), (2, 2));
        assert_eq!(rejoined.leader, first.member_id, "the leader stays");
        assert_eq!(rejoined.members.len(), 2, "the leader sees every member");
        assert!(second.members.is_empty(), "followers do not");

        // The follower waits for the leader's assignment.
        let following = {
            let coordinator = Arc::clone(&coordinator);
            let id = second.member_id.clone();
            tokio::spawn(async move { coordinator.sync("g", &id, 2, Vec::new()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!following.is_finished());
        let plan = vec![(first.member_id.clone(), "p0".into()), (second.member_id.clone(), "p1".into())];
        let leader = coordinator.sync("g", &first.member_id, 2, plan).await;
        assert_eq!(leader.assignment.as_ref(), b"p0");
        assert_eq!(following.await.expect("sync task").assignment.as_ref(), b"p1");
        assert_eq!(coordinator.heartbeat("g", &second.member_id, 1).await, Some(ResponseError::IllegalGeneration));
        assert_eq!(coordinator.heartbeat("g", "nobody", 2).await, Some(ResponseError::UnknownMemberId));
        assert_eq!(coordinator.may_commit("g", &second.member_id, 2).await, None);
        assert_eq!(coordinator.may_commit("g", &second.member_id, 1).await, Some(ResponseError::IllegalGeneration));
    }

    #[tokio::test]
    async fn a_silent_member_is_dropped_and_the_others_rebalance() {
        let coordinator = Coordinator::new();
        let first = coordinator.join(join_request("")).await;
        coordinator.sync("g", &first.member_id, 1, Vec::new()).await;
        let joining = {
            let coordinator = Arc::clone(&coordinator);
            tokio::spawn(async move { coordinator.join(join_request("")).await })
        };
        // The first member never heartbeats again: its session (300 ms) ends.
        tokio::time::sleep(Duration::from_millis(400)).await;
        coordinator.tick().await;
        let second = joining.await.expect("join task");
        assert_eq!(second.generation, 2);
        assert_eq!(second.leader, second.member_id, "the one left leads");
        assert_eq!(coordinator.heartbeat("g", &first.member_id, 2).await, Some(ResponseError::UnknownMemberId));
        let left = coordinator.leave("g", &[second.member_id.clone(), "nobody".into()]).await;
        assert_eq!(left, vec![None, Some(ResponseError::UnknownMemberId)]);
    }
}
