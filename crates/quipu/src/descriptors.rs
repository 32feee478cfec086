//! The process's file descriptor limit, and the connections each door
//! may hold within it. Every connection costs a descriptor, and so does
//! every segment and index file the store opens: doors that took every
//! descriptor would leave the store unable to roll a segment. So `quipu
//! serve` first raises its soft limit to the hard one (as Go programs and
//! most servers do: the soft limit is often 1,024 where the hard one is far
//! higher), then gives each door by default an equal share of what is
//! left after [`DESCRIPTORS_RESERVED`], at most
//! [`quipu_server::CONNECTIONS_MAX_DEFAULT`] and at least
//! [`CONNECTIONS_MAX_FLOOR`].

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for all but the doors' connections: segments, index
/// files, listeners, the cluster's and publishers' clients.
const DESCRIPTORS_RESERVED: u64 = 256;

/// Fewest connections a door is given by default, however low the
/// descriptor limit.
const CONNECTIONS_MAX_FLOOR: usize = 16;

/// The soft limit asked for when the hard one is unlimited.
const DESCRIPTORS_UNLIMITED: u64 = 1 << 20;

/// Connections each of `doors` doors may hold open: `given` when set
/// (with a warning when the doors could then take the descriptors the
/// store needs), else the door's share of the descriptor limit.
pub fn connections_max(given: Option<u64>, doors: usize) -> usize {
    let descriptors = raise_descriptor_limit();
    let Some(given) = given else {
        return share(descriptors, doors);
    };
    let needed = given.saturating_mul(doors as u64).saturating_add(DESCRIPTORS_RESERVED);
    if descriptors.is_some_and(|limit| needed > limit) {
        tracing::warn!(
            max_connections = given,
            doors,
            descriptor_limit = descriptors,
            "the doors may hold more connections than the file descriptor limit leaves the store"
        );
    }
    usize::try_from(given).unwrap_or(usize::MAX)
}

/// A door's share of `descriptors` (`None`: unlimited) among `doors`.
fn share(descriptors: Option<u64>, doors: usize) -> usize {
    let default = quipu_server::CONNECTIONS_MAX_DEFAULT;
    let Some(descriptors) = descriptors else { return default };
    let each = descriptors.saturating_sub(DESCRIPTORS_RESERVED) / (doors.max(1) as u64);
    usize::try_from(each).unwrap_or(usize::MAX).clamp(CONNECTIONS_MAX_FLOOR, default)
}

/// Raises the soft descriptor limit to the hard one when it can; the soft
/// limit in effect after (`None`: unlimited).
fn raise_descriptor_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.unwrap_or(DESCRIPTORS_UNLIMITED);
    if limit.current.is_some_and(|current| current < wanted) {
        let raised = Rlimit { current: Some(wanted), maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return Some(wanted),
            Err(error) => tracing::debug!(%error, "cannot raise the file descriptor limit"),
        }
    }
    limit.current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_door_gets_a_share_of_the_descriptors_left_within_bounds() {
        assert_eq!(share(Some(1024), 2), 384);
        assert_eq!(share(Some(1024 * 1024), 4), quipu_server::CONNECTIONS_MAX_DEFAULT);
        assert_eq!(share(None, 2), quipu_server::CONNECTIONS_MAX_DEFAULT);
        assert_eq!(share(Some(128), 2), CONNECTIONS_MAX_FLOOR);
    }
}
