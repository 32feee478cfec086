//! [`Node`]: every service of one Quipu node over one store, opened
//! together, stopped together and closed once the last request that holds
//! the store has finished. Doors take the services they translate from
//! here; none opens a service of its own.

use std::sync::Arc;
use std::time::Duration;

use quipu_core::Store;
use tokio::sync::{Semaphore, watch};

use crate::ApiError;
use crate::feed::Live;
use crate::group::{Failover, Feeds, Groups, NodesUp};
use crate::integration::IntegrationTypes;
use crate::lifecycle::Lifecycle;
use crate::lifecycle::scavenger::Scavenger;
use crate::metrics::Metrics;
use crate::projection::{Blocks, Projections};
use crate::read::Reads;
use crate::refresher::Refresher;
use crate::schema::Schemas;
use crate::snapshot::Snapshots;
use crate::submission::Admission;
use crate::tail::TailOptions;
use crate::upcast::Upcasters;

/// Why a node did not open: the registry that did not load from its
/// system stream.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The consumer groups could not be loaded from `$groups`.
    #[error("loading consumer groups: {}", .0.message)]
    Groups(ApiError),
    /// The integration types could not be loaded from
    /// `$integration-types`.
    #[error("loading integration types: {}", .0.message)]
    Integration(ApiError),
    /// The schema registry could not be loaded from `$schemas`.
    #[error("loading the schema registry: {}", .0.message)]
    Schemas(ApiError),
    /// Stream metadata could not be loaded from `$stream-metadata`.
    #[error("loading stream metadata: {}", .0.message)]
    Lifecycle(ApiError),
    /// The upcasters could not be loaded from `$upcasters`.
    #[error("loading upcasters: {}", .0.message)]
    Upcasters(ApiError),
    /// The snapshot policies could not be loaded.
    #[error("loading snapshot policies: {}", .0.message)]
    Snapshots(ApiError),
    /// The projections' rebuilds could not be loaded from `$projections`.
    #[error("loading projection rebuilds: {}", .0.message)]
    Projections(ApiError),
}

/// The services of one node. Each field is shared (`Arc` or a cheap
/// handle): a door clones what it serves.
pub struct Node {
    /// The store. A clone held past [`Node::close`] keeps it open until
    /// dropped (close waits [`CLOSE_WAIT`] for that).
    pub store: Arc<Store>,
    /// Live feeds and the shared tail.
    pub live: Live,
    /// Reads with lifecycle and upcasting: the one read path.
    pub reads: Reads,
    /// What every append must pass.
    pub admission: Arc<Admission>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Consumer groups.
    pub groups: Arc<Groups>,
    /// Projection runners, rebuilds and blocks.
    pub projections: Arc<Projections>,
    /// The event types marked as integration events.
    pub integration: Arc<IntegrationTypes>,
    /// Snapshots and their policies.
    pub snapshots: Arc<Snapshots>,
    /// The schema registry.
    pub schemas: Arc<Schemas>,
    /// Upcasting declarations.
    pub upcasters: Arc<Upcasters>,
    /// Stream metadata, deletes and tombstones.
    pub lifecycle: Arc<Lifecycle>,
    /// The online scavenge.
    pub scavenger: Arc<Scavenger>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

/// How long [`Node::close`] waits for requests that still hold the store.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Node {
    /// Opens every service over `store`, loading their registries from
    /// its system streams; feeds follow the store's head on the current
    /// runtime.
    ///
    /// # Errors
    /// [`OpenError`] naming the registry that did not load.
    pub fn open(store: Store) -> Result<Node, OpenError> {
        Node::open_shared(Arc::new(store))
    }

    /// As [`Node::open`], over a store already shared (a cluster's replica
    /// holds it too). On a replica, the registries other nodes write to
    /// are kept following their system streams until the node stops (see
    /// [`crate::refresher`]).
    ///
    /// # Errors
    /// [`OpenError`] naming the registry that did not load.
    pub fn open_shared(store: Arc<Store>) -> Result<Node, OpenError> {
        Node::open_shared_as(store, None)
    }

    /// As [`Node::open_shared`], as cluster node `cluster_node`: on a
    /// replica, the consumer groups whose home is `cluster_node` run here
    /// and the groups created here get it as their home (see
    /// [`crate::group`]). On a store that is not a replica the name is
    /// ignored: a node alone runs every group.
    ///
    /// # Errors
    /// [`OpenError`] naming the registry that did not load.
    pub fn open_shared_as(store: Arc<Store>, cluster_node: Option<String>) -> Result<Node, OpenError> {
        let cluster_node = cluster_node.filter(|_| store.is_replica());
        let (stop, stopping) = watch::channel(false);
        let live = Live::follow(&store, stopping, TailOptions::default());
        let blocks = Arc::new(Blocks::default());
        let projections =
            Arc::new(Projections::open(Arc::clone(&store), Arc::clone(&blocks)).map_err(OpenError::Projections)?);
        let integration = Arc::new(IntegrationTypes::open(Arc::clone(&store)).map_err(OpenError::Integration)?);
        let upcasters = Arc::new(Upcasters::open(Arc::clone(&store)).map_err(OpenError::Upcasters)?);
        let feeds = Feeds {
            store: Arc::clone(&store),
            live: live.clone(),
            integration: Arc::clone(&integration),
            upcasters: Arc::clone(&upcasters),
        };
        let groups = Arc::new(Groups::open_as(feeds, cluster_node).map_err(OpenError::Groups)?);
        let lifecycle = Arc::new(Lifecycle::open(Arc::clone(&store)).map_err(OpenError::Lifecycle)?);
        let snapshots =
            Arc::new(Snapshots::open(Arc::clone(&store), Arc::clone(&lifecycle)).map_err(OpenError::Snapshots)?);
        let schemas = Arc::new(Schemas::open(Arc::clone(&store)).map_err(OpenError::Schemas)?);
        let admission = Arc::new(Admission {
            blocks,
            schemas: Arc::clone(&schemas),
            lifecycle: Arc::clone(&lifecycle),
            event_bytes_max: store.options().event_bytes_max,
            slots: Arc::new(Semaphore::new((store.options().queue_appends_max / 2).max(1))),
        });
        if store.is_replica() {
            let refresher = Refresher {
                integration: Arc::clone(&integration),
                lifecycle: Arc::clone(&lifecycle),
                schemas: Arc::clone(&schemas),
                snapshots: Arc::clone(&snapshots),
                upcasters: Arc::clone(&upcasters),
                projections: Arc::clone(&projections),
                groups: Arc::clone(&groups),
            };
            refresher.start(Arc::clone(&store), stop.subscribe());
        }
        let scavenger = Arc::new(Scavenger::new(Arc::clone(&store), Arc::clone(&lifecycle)));
        let reads = Reads::new(Arc::clone(&store), live.clone(), Arc::clone(&lifecycle), Arc::clone(&upcasters));
        Ok(Node {
            store,
            live,
            reads,
            admission,
            metrics: Arc::new(Metrics::default()),
            groups,
            projections,
            integration,
            snapshots,
            schemas,
            upcasters,
            lifecycle,
            scavenger,
            stop,
        })
    }

    /// Turns true when the node is told to stop: doors stop accepting and
    /// end their long-lived answers.
    #[must_use]
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// In a cluster, moves to this node the consumer groups whose home has
    /// been missing from `nodes` (the nodes seen up, from the cluster's
    /// membership) for `after`, when this node is their heir (see
    /// [`crate::group::failover`]), until the node stops. Alone it does
    /// nothing.
    pub fn fail_over_groups(&self, nodes: watch::Receiver<NodesUp>, after: Duration) {
        let Some(node) = self.groups.node() else {
            return;
        };
        Failover::new(Arc::clone(&self.groups), node.to_string(), after).start(nodes, self.stop.subscribe());
    }

    /// Stops the node's work: live feeds end, groups write their
    /// checkpoints and their members' streams end, a scavenge ends after
    /// the segment in hand, a replica's registries stop following their
    /// streams. Appends still in flight are answered.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        self.groups.shutdown().await;
        self.scavenger.shutdown();
    }

    /// Closes the store once the last request that holds it has finished
    /// (waiting at most [`CLOSE_WAIT`]; past that it closes when they
    /// finish, and every acknowledged append is durable already).
    ///
    /// # Errors
    /// The store did not close cleanly.
    pub async fn close(self) -> Result<(), quipu_core::Error> {
        let mut store = self.store;
        // Every service's clone of the store goes first.
        drop((self.live, self.reads, self.admission, self.groups, self.projections, self.integration));
        drop((self.snapshots, self.schemas, self.upcasters, self.lifecycle, self.scavenger));
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            match Arc::try_unwrap(store) {
                Ok(store) => return store.close(),
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    store = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    tracing::warn!("requests still hold the store after {CLOSE_WAIT:?}; it closes when they finish");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::{OnceLock, Weak};

    use quipu_core::{Applied, Options, Proposer, Reply, Source};

    use super::*;
    use crate::refresher::REFRESH_INTERVAL;
    use crate::schema::Mode;

    /// A cluster of one: each proposal is applied to the store at once, as
    /// if read back from the shared log. Makes the store a replica without
    /// a broker.
    #[derive(Default)]
    struct Loopback {
        store: OnceLock<Weak<Store>>,
        offset: AtomicI64,
    }

    impl Proposer for Loopback {
        fn propose(&self, request: quipu_core::AppendRequest, reply: Reply) {
            let Some(store) = self.store.get().and_then(Weak::upgrade) else {
                return reply(Err(quipu_core::Error::Closed));
            };
            let offset = self.offset.fetch_add(1, Ordering::Relaxed);
            let applied =
                Applied { recorded_at_us: crate::clock::now_us(), source: Source { epoch: 0, partition: 0, offset } };
            store.submit_applied(request, applied, reply);
        }

        fn close(&self, _store: &Store) {}
    }

    pub(crate) fn replica(dir: &std::path::Path) -> Arc<Store> {
        let store = Arc::new(Store::open(dir, Options::default()).expect("open"));
        let loopback = Arc::new(Loopback::default());
        loopback.store.set(Arc::downgrade(&store)).expect("set once");
        store.propose_through(loopback).expect("the first proposer");
        store
    }

    /// Waits up to five seconds for `done`.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Two nodes over one replica's store (each node's store holds every
    /// record): what one writes to its registries, the other takes in
    /// without a change of its own, until it stops.
    #[tokio::test]
    async fn a_replica_node_follows_what_another_node_writes_to_its_registries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = replica(dir.path());
        let one = Node::open_shared(Arc::clone(&store)).expect("open");
        let two = Node::open_shared(Arc::clone(&store)).expect("open");
        one.schemas.set_mode(None, Mode::Full).await.expect("set mode");
        one.integration.mark(&["Shipped".into()]).await.expect("mark");
        let three = crate::lifecycle::Metadata { max_count: Some(3), ..Default::default() };
        one.lifecycle.set("order-1", three.clone()).await.expect("set");
        eventually("two taking in one's records", || {
            two.schemas.mode(None) == Mode::Full
                && !two.integration.snapshot().is_empty()
                && two.lifecycle.metadata("order-1") == three
        })
        .await;

        // The refresher holds the registries until the node stops.
        let held = Arc::strong_count(&two.upcasters);
        two.stop().await;
        eventually("two's refresher ending", || Arc::strong_count(&two.upcasters) == held - 1).await;
        one.stop().await;
    }

    /// A node alone runs no refresher: its registries change only through
    /// it.
    #[tokio::test]
    async fn a_node_alone_does_not_follow_its_registries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let one = Node::open_shared(Arc::clone(&store)).expect("open");
        let two = Node::open_shared(Arc::clone(&store)).expect("open");
        one.schemas.set_mode(None, Mode::Full).await.expect("set mode");
        tokio::time::sleep(REFRESH_INTERVAL * 6).await;
        assert_eq!(two.schemas.mode(None), crate::schema::registry::DEFAULT_MODE, "two did not follow one");
        two.schemas.refresh().await.expect("refresh");
        assert_eq!(two.schemas.mode(None), Mode::Full, "a refresh asked for still works");
    }
}
