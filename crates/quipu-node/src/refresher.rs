//! [`Refresher`]: keeps a cluster replica's registries following their
//! system streams. On a replica every node applies every record, so the
//! records another node writes to `$schemas`, `$stream-metadata` and the
//! rest land in this node's store too; the refresher folds them into this
//! node's registries soon after, instead of at the next restart or the
//! next change made here.
//!
//! What it promises: within about [`REFRESH_INTERVAL`] of the store's last
//! position moving, every followed registry has taken in the records
//! written before that move. A registry that fails to refresh is logged
//! (once per distinct error) and tried again at the next move; the others
//! go on. It stops when the node stops.
//!
//! Consumer groups are followed too: a refresh takes in the groups
//! created, changed, moved and deleted elsewhere, and starts or stops the
//! actors of the groups whose home is (or no longer is) this node.
//! A node that stands alone never starts a refresher: only it writes its
//! system streams, and its registries fold what it writes.

use std::sync::Arc;
use std::time::Duration;

use quipu_core::{Position, Store};
use tokio::sync::watch;

use crate::ApiError;
use crate::group::Groups;
use crate::integration::IntegrationTypes;
use crate::lifecycle::Lifecycle;
use crate::projection::Projections;
use crate::schema::Schemas;
use crate::snapshot::Snapshots;
use crate::upcast::Upcasters;

/// How often the refresher looks whether the store's last position moved.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(50);

/// The registries a replica keeps following.
pub struct Refresher {
    /// Integration event types.
    pub integration: Arc<IntegrationTypes>,
    /// Stream metadata, deletes and tombstones.
    pub lifecycle: Arc<Lifecycle>,
    /// The schema registry.
    pub schemas: Arc<Schemas>,
    /// Snapshot policies.
    pub snapshots: Arc<Snapshots>,
    /// Upcasting declarations.
    pub upcasters: Arc<Upcasters>,
    /// Projection rebuilds and the categories they close.
    pub projections: Arc<Projections>,
    /// Consumer groups and the actors of those at home here.
    pub groups: Arc<Groups>,
}

/// The followed registries' names, in the order a round refreshes them.
const REGISTRIES: [&str; 7] = [
    "integration types",
    "stream metadata",
    "schemas",
    "snapshot policies",
    "upcasters",
    "projection rebuilds",
    "consumer groups",
];

/// The last error each registry logged, so a lasting one is logged once.
#[derive(Default)]
struct Logged([Option<String>; REGISTRIES.len()]);

impl Refresher {
    /// Refreshes every registry once the store's last position has moved
    /// since the last round (the first round runs at once, for what was
    /// written while the registries opened), until `stopping` turns true
    /// or its sender is dropped (the node stopped, or was dropped). Runs
    /// on the current runtime.
    pub fn start(self, store: Arc<Store>, stopping: watch::Receiver<bool>) {
        tokio::spawn(self.run(store, stopping));
    }

    async fn run(self, store: Arc<Store>, mut stopping: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(REFRESH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed_at: Option<Option<Position>> = None;
        let mut logged = Logged::default();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            let last = store.last_position();
            if refreshed_at == Some(last) {
                continue;
            }
            // Taken before the round: what lands during it moves the
            // position again and gets the next one.
            refreshed_at = Some(last);
            self.refresh(&mut logged).await;
        }
    }

    /// One round: every registry at once (a registry busy with a change
    /// holds up only its own refresh).
    async fn refresh(&self, logged: &mut Logged) {
        let (integration, lifecycle, schemas, snapshots, upcasters, projections, groups) = tokio::join!(
            self.integration.refresh(),
            self.lifecycle.refresh(),
            self.schemas.refresh(),
            self.snapshots.refresh(),
            self.upcasters.refresh(),
            self.projections.refresh(),
            self.groups.refresh(),
        );
        let outcomes = [integration, lifecycle, schemas, snapshots, upcasters, projections, groups];
        for ((registry, outcome), last) in REGISTRIES.into_iter().zip(outcomes).zip(&mut logged.0) {
            log(registry, outcome, last);
        }
    }
}

/// Warns of a failed refresh unless `last` says it was logged already;
/// notes a recovery.
fn log(registry: &'static str, outcome: Result<(), ApiError>, last: &mut Option<String>) {
    match outcome {
        Ok(()) => {
            if last.take().is_some() {
                tracing::info!(registry, "refreshing the registry works again");
            }
        }
        Err(error) => {
            if last.as_deref() != Some(error.message.as_str()) {
                tracing::warn!(registry, message = %error.message, "refreshing the registry failed; tried again when the log moves");
                *last = Some(error.message);
            }
        }
    }
}
