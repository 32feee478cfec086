//! [`Failover`]: in a cluster, moves the consumer groups of a node that is
//! down to the nodes that are up.
//!
//! A group runs on its home node only (see [`super::Groups`]). Once its
//! home has been missing from the nodes seen up for the failover delay,
//! one node that is up takes it: the group's *heir*, chosen among the
//! nodes up by rendezvous hashing of the group's name over their names,
//! so the groups of a lost node spread over the others and every node
//! that sees the same nodes up picks the same heir. The heir moves the
//! group to itself with a `$groups` record that expects the group's home
//! to be the lost node ([`super::Groups::take_over`]): if two nodes take
//! it at once (they saw different nodes up), the log orders their records
//! and the second finds the home moved and changes nothing. The new home
//! starts the group from its last checkpoint, so delivery stays at least
//! once, as after a move by hand.
//!
//! A node acts on fresh news only: while it does not know who is up (its
//! last ask failed), or has not itself been seen up for the failover
//! delay (it just started, or is cut off from the brokers), it moves
//! nothing. A home that comes back after its groups moved does not take
//! them back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Groups;

/// How often a node looks for groups to take, besides every change of the
/// nodes seen up.
const LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// The nodes seen up: `None` while not known.
pub type NodesUp = Option<BTreeSet<String>>;

/// A group and its home (`None`: it has none and runs nowhere).
pub type Homed = (String, Option<String>);

/// Moves the groups of nodes that are down to this node when it is their
/// heir. See the module's documentation.
pub struct Failover {
    groups: Arc<Groups>,
    node: String,
    after: Duration,
}

impl Failover {
    /// A failover for the groups of `groups`, run as cluster node `node`,
    /// taking a group once its home has been missing for `after`.
    #[must_use]
    pub fn new(groups: Arc<Groups>, node: String, after: Duration) -> Failover {
        Failover { groups, node, after }
    }

    /// Follows `nodes` (the nodes seen up, from the cluster's membership)
    /// on the current runtime until `stopping` turns true or either
    /// sender is dropped.
    pub fn start(self, nodes: watch::Receiver<NodesUp>, stopping: watch::Receiver<bool>) {
        tokio::spawn(self.run(nodes, stopping));
    }

    async fn run(self, mut nodes: watch::Receiver<NodesUp>, mut stopping: watch::Receiver<bool>) {
        let mut absences = Absences::default();
        let mut interval = tokio::time::interval(LOOK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = nodes.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            let up = nodes.borrow_and_update().clone();
            let homes = self.groups.homes();
            for (name, from) in absences.observe(&self.node, up.as_ref(), &homes, Instant::now(), self.after) {
                self.take(&name, from.as_deref()).await;
            }
        }
    }

    async fn take(&self, name: &str, from: Option<&str>) {
        match self.groups.take_over(name, from).await {
            Ok(true) => tracing::info!(group = %name, from = ?from, "took over the group of a node that is down"),
            Ok(false) => tracing::debug!(group = %name, "the group was moved or deleted meanwhile"),
            // Most likely another node took it first: the next look sees.
            Err(error) => tracing::info!(group = %name, message = %error.message, "taking over the group failed"),
        }
    }
}

/// What one node has seen of the others over time.
#[derive(Debug, Default)]
struct Absences {
    /// Since when this node has been seen up without a break.
    up_since: Option<Instant>,
    /// Since when each home (by name; `None` for groups without one) has
    /// been missing from the nodes seen up, as far as this node saw.
    missing_since: BTreeMap<Option<String>, Instant>,
}

impl Absences {
    /// Takes in the nodes seen up at `now` (`None`: not known) and the
    /// groups' homes; answers the groups `node` should take now, each with
    /// the home it takes it from.
    fn observe(
        &mut self,
        node: &str,
        up: Option<&BTreeSet<String>>,
        homes: &[Homed],
        now: Instant,
        after: Duration,
    ) -> Vec<Homed> {
        let Some(up) = up.filter(|up| up.contains(node)) else {
            // Not sure who is up, or not up itself: forget every clock,
            // so an absence counts again from fresh news.
            *self = Absences::default();
            return Vec::new();
        };
        let up_since = *self.up_since.get_or_insert(now);
        let homes_now: BTreeSet<&Option<String>> = homes.iter().map(|(_, home)| home).collect();
        self.missing_since.retain(|home, _| homes_now.contains(home));
        for home in homes_now {
            if home.as_ref().is_some_and(|home| up.contains(home)) {
                self.missing_since.remove(home);
            } else {
                self.missing_since.entry(home.clone()).or_insert(now);
            }
        }
        if now.duration_since(up_since) < after {
            return Vec::new();
        }
        homes
            .iter()
            .filter(|(_, home)| self.missing_since.get(home).is_some_and(|since| now.duration_since(*since) >= after))
            .filter(|(name, _)| heir(name, up) == Some(node))
            .cloned()
            .collect()
    }
}

/// The node among `up` that takes group `name` when its home is down: the
/// highest score of the group's and the node's names together (rendezvous
/// hashing); `None` when nobody is up.
fn heir<'a>(name: &str, up: &'a BTreeSet<String>) -> Option<&'a str> {
    up.iter().max_by_key(|node| (score(name, node), node.as_str())).map(String::as_str)
}

/// A hash of a group's and a node's names, the same on every node and
/// every build (xxh3 has a fixed definition).
fn score(group: &str, node: &str) -> u64 {
    let mut bytes = Vec::with_capacity(group.len() + 1 + node.len());
    bytes.extend_from_slice(group.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(node.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(5);

    fn up(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_string()).collect()
    }

    fn homed(name: &str, home: &str) -> Homed {
        (name.to_string(), Some(home.to_string()))
    }

    /// The groups of `names` homed on `home`, with `node`'s view: which
    /// of them its heir rule gives `node` when `nodes` are up.
    fn heirs_of(names: &[String], nodes: &BTreeSet<String>, node: &str) -> Vec<String> {
        names.iter().filter(|name| heir(name, nodes) == Some(node)).cloned().collect()
    }

    #[test]
    fn a_group_whose_home_is_missing_for_the_delay_goes_to_its_one_heir() {
        let homes = vec![homed("billing", "a")];
        let nodes = up(&["b", "c"]);
        let t0 = Instant::now();
        let heir = heir("billing", &nodes).expect("someone is up").to_string();
        let other = if heir == "b" { "c" } else { "b" };
        let (mut at_heir, mut at_other) = (Absences::default(), Absences::default());
        for (seconds, expected) in [(0, false), (4, false), (5, true), (9, true)] {
            let now = t0 + Duration::from_secs(seconds);
            let taken = at_heir.observe(&heir, Some(&nodes), &homes, now, AFTER);
            assert_eq!(taken == vec![homed("billing", "a")], expected, "heir at {seconds} s: {taken:?}");
            assert!(at_other.observe(other, Some(&nodes), &homes, now, AFTER).is_empty(), "only the heir takes it");
        }
    }

    #[test]
    fn a_home_seen_again_resets_its_clock() {
        let homes = vec![homed("billing", "a")];
        let (with_a, without_a) = (up(&["a", "b"]), up(&["b"]));
        let t0 = Instant::now();
        let mut absences = Absences::default();
        assert!(absences.observe("b", Some(&without_a), &homes, t0, AFTER).is_empty());
        assert!(absences.observe("b", Some(&with_a), &homes, t0 + Duration::from_secs(3), AFTER).is_empty());
        let later = t0 + Duration::from_secs(6);
        assert!(absences.observe("b", Some(&without_a), &homes, later, AFTER).is_empty(), "missing 0 s, not 6");
        let taken = absences.observe("b", Some(&without_a), &homes, later + AFTER, AFTER);
        assert_eq!(taken, homes, "missing for the delay since it was seen");
    }

    #[test]
    fn a_node_that_is_not_up_itself_or_does_not_know_takes_nothing() {
        let homes = vec![homed("billing", "a")];
        let t0 = Instant::now();
        let mut absences = Absences::default();
        for seconds in 0..20 {
            let now = t0 + Duration::from_secs(seconds);
            assert!(absences.observe("b", Some(&up(&["c"])), &homes, now, AFTER).is_empty(), "b is not up");
        }
        let mut absences = Absences::default();
        assert!(absences.observe("b", Some(&up(&["b"])), &homes, t0, AFTER).is_empty());
        assert!(absences.observe("b", None, &homes, t0 + Duration::from_secs(4), AFTER).is_empty());
        let after_unknown = t0 + Duration::from_secs(6);
        assert!(
            absences.observe("b", Some(&up(&["b"])), &homes, after_unknown, AFTER).is_empty(),
            "news lost in between: the clocks start again"
        );
        let taken = absences.observe("b", Some(&up(&["b"])), &homes, after_unknown + AFTER, AFTER);
        assert_eq!(taken, homes);
    }

    #[test]
    fn a_node_just_up_waits_the_delay_before_taking_anything() {
        let homes = vec![homed("billing", "a"), ("orphan".to_string(), None)];
        let t0 = Instant::now();
        let mut absences = Absences::default();
        assert!(absences.observe("b", Some(&up(&["b"])), &homes, t0, AFTER).is_empty());
        let taken = absences.observe("b", Some(&up(&["b"])), &homes, t0 + AFTER, AFTER);
        assert_eq!(taken, homes, "alone up, it is every group's heir, a homeless one too");
    }

    #[test]
    fn the_groups_of_a_lost_node_spread_over_the_others_and_every_view_agrees() {
        let names: Vec<String> = (0..300).map(|n| format!("group-{n}")).collect();
        let nodes = up(&["b", "c", "d"]);
        let shares: Vec<usize> = ["b", "c", "d"].iter().map(|node| heirs_of(&names, &nodes, node).len()).collect();
        assert_eq!(shares.iter().sum::<usize>(), names.len(), "each group has exactly one heir: {shares:?}");
        assert!(shares.iter().all(|share| *share >= 60), "spread over the nodes: {shares:?}");
        let fewer = up(&["b", "c"]);
        for name in &names {
            let before = heir(name, &nodes).expect("up");
            let after = heir(name, &fewer).expect("up");
            assert!(before == "d" || before == after, "a node leaving moves only its own share: {name}");
        }
    }
}
