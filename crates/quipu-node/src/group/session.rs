//! Members that consume over HTTP. HTTP has no connection to watch, so a
//! member is a session keyed by group and member name: the first poll
//! joins the group, polls take deliveries, acks and nacks answer them,
//! `DELETE` leaves cleanly. A session that neither polls nor answers for
//! longer than its group's message timeout leaves as failed: its events
//! go to other members and count as failed attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quipu_core::Position;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::dispatcher::{Delivery, NackAction};
use super::registry::{Groups, Membership};
use crate::{ApiError, ErrorCode};

/// Most events one poll returns.
pub const POLL_MAX: usize = 1000;

/// Longest a poll waits for its first event.
pub const POLL_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often idle sessions are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

type Key = (String, String);

struct Session {
    membership: Membership,
    deliveries: tokio::sync::Mutex<UnboundedReceiver<Delivery>>,
    last_seen: Mutex<Instant>,
}

impl Session {
    fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_since(&self) -> Instant {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The HTTP members of every group.
pub struct Sessions {
    groups: Arc<Groups>,
    sessions: Mutex<HashMap<Key, Arc<Session>>>,
}

impl Sessions {
    /// No sessions yet; a task drops idle ones until the returned value
    /// is dropped.
    #[must_use]
    pub fn new(groups: Arc<Groups>) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions { groups, sessions: Mutex::new(HashMap::new()) });
        let weak = Arc::downgrade(&sessions);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(sessions) = weak.upgrade() else { return };
                sessions.sweep();
            }
        });
        sessions
    }

    /// Up to `max` deliveries for `member` of `group`, waiting up to `wait`
    /// for the first; joins the group on the first call.
    ///
    /// # Errors
    /// 404 for an unknown group, 400 for a bad member name or limits.
    pub async fn poll(&self, group: &str, member: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, ApiError> {
        if max == 0 || max > POLL_MAX || wait > POLL_WAIT_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidPoll,
                format!("max must be 1 to {POLL_MAX} and wait_ms at most {}", POLL_WAIT_MAX.as_millis()),
            ));
        }
        let session = self.session(group, member).await?;
        session.touch();
        let mut deliveries = session.deliveries.lock().await;
        let mut taken = Vec::new();
        let first = tokio::time::timeout(wait, deliveries.recv()).await;
        match first {
            Ok(Some(delivery)) => taken.push(delivery),
            Ok(None) => {
                // The group stopped: the session is over.
                self.remove(group, member);
                return Ok(taken);
            }
            Err(_) => return Ok(taken),
        }
        while taken.len() < max {
            match deliveries.try_recv() {
                Ok(delivery) => taken.push(delivery),
                Err(_) => break,
            }
        }
        session.touch();
        Ok(taken)
    }

    /// Acknowledges events for a member that has polled.
    ///
    /// # Errors
    /// 404 when the member has no session.
    pub async fn ack(&self, group: &str, member: &str, positions: Vec<Position>) -> Result<(), ApiError> {
        let session = self.existing(group, member)?;
        session.touch();
        session.membership.ack(positions).await;
        Ok(())
    }

    /// Negatively acknowledges events for a member that has polled.
    ///
    /// # Errors
    /// 404 when the member has no session.
    pub async fn nack(
        &self,
        group: &str,
        member: &str,
        positions: Vec<Position>,
        action: NackAction,
        reason: String,
    ) -> Result<(), ApiError> {
        let session = self.existing(group, member)?;
        session.touch();
        session.membership.nack(positions, action, reason).await;
        Ok(())
    }

    /// Ends a member's session cleanly.
    ///
    /// # Errors
    /// 404 when the member has no session.
    pub fn leave(&self, group: &str, member: &str) -> Result<(), ApiError> {
        let session = self.remove(group, member).ok_or_else(|| no_member(group, member))?;
        match Arc::try_unwrap(session) {
            Ok(session) => session.membership.leave(),
            // A poll still holds it: it leaves (as failed) when that ends.
            Err(_) => tracing::debug!(group, member, "a member left during a poll"),
        }
        Ok(())
    }

    async fn session(&self, group: &str, member: &str) -> Result<Arc<Session>, ApiError> {
        if let Ok(session) = self.existing(group, member) {
            return Ok(session);
        }
        let mut membership = self.groups.join(group, member, 0).await?;
        let deliveries = membership.take_deliveries();
        let session = Arc::new(Session {
            membership,
            deliveries: tokio::sync::Mutex::new(deliveries),
            last_seen: Mutex::new(Instant::now()),
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Two first polls may race: keep the one that got in first.
        Ok(Arc::clone(sessions.entry((group.to_string(), member.to_string())).or_insert(session)))
    }

    fn existing(&self, group: &str, member: &str) -> Result<Arc<Session>, ApiError> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(&(group.to_string(), member.to_string())).cloned().ok_or_else(|| no_member(group, member))
    }

    fn remove(&self, group: &str, member: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&(group.to_string(), member.to_string()))
    }

    /// Drops sessions idle for longer than their group's message timeout;
    /// a session in the middle of a poll is not idle.
    fn sweep(&self) {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, session| {
            Arc::strong_count(session) > 1
                || now.duration_since(session.idle_since()) <= session.membership.message_timeout()
        });
    }
}

fn no_member(group: &str, member: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MemberNotFound,
        format!("no member {member:?} in group {group:?}: poll first (sessions end after the group's message timeout)"),
    )
}
