//! [`Proposer`]: where a store sends the appends it takes when it is one
//! replica of a cluster. Alone, a store decides each append itself; in a
//! cluster, every append must first be ordered by the shared log, and the
//! store decides it only when it applies it from there
//! ([`crate::Store::submit_applied`]), as every other replica does. A
//! store given a proposer ([`crate::Store::propose_through`]) hands it
//! every append it would have queued, after validating it, so every
//! service and door of the node writes through the cluster without
//! knowing it.

use crate::append::AppendRequest;
use crate::sequencer::Reply;

/// Where the answer of [`Proposer::sync`] goes.
pub type SyncReply = Box<dyn FnOnce(Result<(), crate::Error>) + Send>;

/// Takes a store's appends to a cluster's shared log and answers each
/// with the decision this store makes when it applies it.
pub trait Proposer: Send + Sync {
    /// Takes `request` (already validated by the store) and calls `reply`
    /// exactly once with its outcome. Must not block: the caller may be
    /// an async worker.
    fn propose(&self, request: AppendRequest, reply: Reply);

    /// Calls `reply` once this store has applied everything the shared log
    /// held when `sync` was called (so a read after it sees every append
    /// acknowledged anywhere before it), or with the error that kept it
    /// from knowing. Must not block.
    fn sync(&self, reply: SyncReply) {
        reply(Ok(()));
    }

    /// Why the proposer takes no appends, when it takes none (it stopped
    /// applying the shared log); `None` while it does.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Stops proposing and applying; called with the store when it
    /// closes, before its sequencer stops (so what the proposer applied is
    /// still decided, and it may read the store). Appends still waiting
    /// are answered with an error. Must be safe to call more than once.
    fn close(&self, store: &crate::Store);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::{
        AppendOutcome, AppendRequest, Applied, Error, EventType, ExpectedRevision, Options, ProposedEvent, Proposer,
        Reply, Source, Store, StreamName,
    };

    /// Keeps what it is given, answers that the cluster is away.
    #[derive(Default)]
    struct Keeper {
        proposed: Mutex<Vec<AppendRequest>>,
        closed: AtomicBool,
    }

    impl Proposer for Keeper {
        fn propose(&self, request: AppendRequest, reply: Reply) {
            self.proposed.lock().expect("not poisoned").push(request);
            reply(Err(Error::ClusterUnavailable { reason: "no broker".into() }));
        }

        fn close(&self, _store: &Store) {
            self.closed.store(true, Ordering::Release);
        }
    }

    fn request(stream: &str) -> AppendRequest {
        let event = ProposedEvent::new(EventType::new("Noted").expect("valid"), b"{}".to_vec());
        AppendRequest::to_stream(StreamName::new(stream).expect("valid"), ExpectedRevision::Any, vec![event])
    }

    #[test]
    fn a_replica_proposes_valid_appends_and_writes_only_what_it_applies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Options::default()).expect("open");
        let keeper = Arc::new(Keeper::default());
        store.propose_through(Arc::clone(&keeper) as Arc<dyn Proposer>).expect("the first proposer");
        assert!(store.is_replica());

        let proposed = request("note-1");
        let outcome = store.append(proposed.clone());
        assert!(matches!(outcome, Err(Error::ClusterUnavailable { .. })), "{outcome:?}");
        assert_eq!(store.last_position(), None, "a proposal writes nothing by itself");
        let invalid = AppendRequest { writes: vec![], condition: None };
        assert!(matches!(store.append(invalid), Err(Error::EmptyAppend)), "refused before it is proposed");
        assert_eq!(*keeper.proposed.lock().expect("not poisoned"), std::slice::from_ref(&proposed));

        let (sender, receiver) = std::sync::mpsc::channel();
        let applied = Applied { recorded_at_us: 1, source: Source { epoch: 0, partition: 0, offset: 0 } };
        store.submit_applied(proposed, applied, move |outcome| sender.send(outcome).expect("waiting"));
        assert!(matches!(receiver.recv().expect("an answer"), Ok(AppendOutcome::Written(_))));
        assert_eq!(store.last_source().expect("read"), Some(applied.source));
        assert!(store.propose_through(Arc::new(Keeper::default())).is_err(), "one proposer per store");

        store.close().expect("close");
        assert!(keeper.closed.load(Ordering::Acquire), "closing the store closes its proposer");
    }
}
