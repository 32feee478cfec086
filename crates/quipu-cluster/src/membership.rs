//! [`Membership`]: which nodes of a cluster are up, as its Kafka brokers
//! see them.
//!
//! Each node joins the Kafka consumer group [`group_id`] of its topic with
//! its node name as client id, the way Kafka Connect workers find each
//! other. It reads nothing through that group: the partitions the group
//! gives it stay paused (the applier reads the topic with a consumer of
//! its own). The brokers' group coordinator drops a member that stops
//! heartbeating for [`SESSION_TIMEOUT`] (a killed process, a lost
//! machine, a cut network), and a node that closes leaves at once.
//!
//! What it promises: about every [`ASK_INTERVAL`] the node asks the
//! coordinator for the group's members and publishes their names; a name
//! is published only if the coordinator listed it at the last ask. An ask
//! that fails publishes `None` (unknown), never the last list again, so
//! whoever acts on the list (consumer-group failover) acts on fresh news
//! only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::groups::GroupList;
use tokio::sync::watch;

/// How long the coordinator waits for a silent member before it drops it
/// (Kafka's smallest allowed session timeout by default).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// How often a node asks who the members are.
pub const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one ask may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one poll of the group's consumer waits (it serves heartbeats
/// and rebalances only).
const POLL: Duration = Duration::from_millis(100);

/// The nodes a node last saw up: the names of the group's members at
/// the last ask, or `None` when not known (not asked yet, or the last ask
/// failed).
pub type Nodes = Option<BTreeSet<String>>;

/// The Kafka consumer group whose members are the nodes of the cluster
/// on `topic`.
#[must_use]
pub fn group_id(topic: &str) -> String {
    format!("quipu.{topic}.nodes")
}

/// A consumer context that pauses every partition the group assigns:
/// membership is all this consumer is for.
struct Paused;

impl ClientContext for Paused {}

impl ConsumerContext for Paused {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance
            && let Err(error) = consumer.pause(partitions)
        {
            tracing::warn!(%error, "pausing the membership group's partitions");
        }
    }
}

/// This node's membership in its cluster's node group, and what it sees
/// of the others. Leaves the group when closed or dropped.
pub struct Membership {
    nodes: watch::Receiver<Nodes>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("nodes", &*self.nodes.borrow()).finish_non_exhaustive()
    }
}

impl Membership {
    /// Joins the node group of `topic` on `brokers` as `node`, on a thread
    /// of its own.
    ///
    /// # Errors
    /// The Kafka client could not be made or could not subscribe, or the
    /// thread could not start.
    pub fn join(brokers: &str, topic: &str, node: &str) -> Result<Membership, KafkaError> {
        assert!(!node.is_empty(), "a node has a name");
        let group = group_id(topic);
        let consumer: BaseConsumer<Paused> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("client.id", node)
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", SESSION_TIMEOUT.as_millis().to_string())
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(Paused)?;
        consumer.subscribe(&[topic])?;
        let (publish, nodes) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("quipu-membership".into())
            .spawn(move || run(&consumer, &group, &publish, &stopping))
            .map_err(|error| KafkaError::Subscription(format!("starting the membership thread: {error}")))?;
        Ok(Membership { nodes, stop, thread: Some(thread) })
    }

    /// The nodes seen up, updated at every ask.
    #[must_use]
    pub fn nodes(&self) -> watch::Receiver<Nodes> {
        self.nodes.clone()
    }

    /// Leaves the group (the others see this node go at their next ask)
    /// and stops the thread. Safe to call more than once.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the membership thread panicked");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.close();
    }
}

/// Keeps the consumer in its group and asks for the members until
/// `stop`, then leaves.
fn run(consumer: &BaseConsumer<Paused>, group: &str, publish: &watch::Sender<Nodes>, stop: &AtomicBool) {
    let mut asked: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Err(error)) = consumer.poll(POLL) {
            tracing::debug!(%error, "membership group");
        }
        if asked.is_none_or(|at| at.elapsed() >= ASK_INTERVAL) {
            asked = Some(Instant::now());
            let seen = match consumer.fetch_group_list(Some(group), ASK_TIMEOUT) {
                Ok(list) => members(&list, group),
                Err(error) => {
                    tracing::debug!(%error, "asking for the cluster's nodes");
                    None
                }
            };
            publish.send_if_modified(|nodes| {
                let changed = *nodes != seen;
                *nodes = seen;
                changed
            });
        }
    }
    consumer.unsubscribe();
}

/// The client ids of `group`'s members in `list`; no such group is an
/// empty one (nobody has joined yet).
fn members(list: &GroupList, group: &str) -> Nodes {
    let names = list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members().iter().map(|m| m.client_id().to_string()))
        .collect();
    Some(names)
}
