//! The queue in front of the sequencer, and the baton that says who
//! commits next.
//!
//! Appends queue here; one committer at a time takes what has queued and
//! hands it to the [`Sequencer`] as one batch (group commit). Who commits
//! depends on how busy the store is:
//!
//! - **Idle store: the caller commits.** When nobody holds the baton, a
//!   thread that submits inline (it is going to wait for the answer
//!   anyway) takes it and commits its own append before `submit` returns. Handing an append to
//!   another thread and waking the caller afterwards costs two thread
//!   wake-ups; on a virtual machine each is tens of microseconds, as much
//!   as a quarter of a durable append. PostgreSQL's backends flush the WAL
//!   for their own commit for the same reason.
//!   A caller that queues many appends before waiting (pipelining) submits
//!   without `inline`, and the sequencer thread commits them.
//! - **Busy store: the sequencer thread commits.** When a caller finishes
//!   its batch and more appends have queued, it passes the baton to the
//!   sequencer thread, which keeps committing groups until the queue is
//!   empty, then lets the baton go. Under load every group is one write
//!   and one fdatasync for many appends, and callers return at once.
//!
//! Either way there is exactly one committer at a time, so appends are
//! decided in one order (the log's), and nothing about durability changes:
//! an append is answered only after its group's fdatasync.
//!
//! `queue_appends_max` bounds the queue: a submitter waits while it is
//! full (back-pressure). With `batch_delay_us` above 0 callers never
//! commit themselves: the sequencer thread waits that long for a batch to
//! fill, as configured.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sequencer::{Sequencer, Submission};

/// Who holds the baton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baton {
    /// Nobody: the next submitter commits.
    Free,
    /// A submitting thread is committing a batch.
    Caller,
    /// The sequencer thread commits until the queue is empty.
    Thread,
}

/// The queue and the baton, under one lock.
struct Queue {
    waiting: VecDeque<Submission>,
    baton: Baton,
    /// The sequencer wants zeros written ahead of the log's end: the
    /// sequencer thread does it once nothing is waiting.
    zeros_due: bool,
    closed: bool,
    /// Submitters waiting for room in a full queue.
    blocked: usize,
}

/// Appends waiting to be committed, and the committer's state.
pub struct Intake {
    queue: Mutex<Queue>,
    /// Wakes the sequencer thread when it gets the baton (or should exit).
    handoff: Condvar,
    /// Wakes submitters waiting for room.
    room: Condvar,
    /// The writer; locked by whoever holds the baton.
    sequencer: Mutex<Sequencer>,
    queue_max: usize,
    batch_max: usize,
    batch_delay: Duration,
}

impl Intake {
    /// An intake in front of `sequencer`.
    #[must_use]
    pub fn new(sequencer: Sequencer) -> Intake {
        let options = sequencer.options();
        let (queue_max, batch_max) = (options.queue_appends_max, options.batch_appends_max);
        let batch_delay = Duration::from_micros(options.batch_delay_us);
        Intake {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                baton: Baton::Free,
                zeros_due: false,
                closed: false,
                blocked: 0,
            }),
            handoff: Condvar::new(),
            room: Condvar::new(),
            sequencer: Mutex::new(sequencer),
            queue_max,
            batch_max,
            batch_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `submission`. With `inline`, if nobody is committing (and no
    /// batch delay is configured), commits it on this thread before
    /// returning; its reply has then been called. Without, the sequencer
    /// thread commits it, so a caller can queue many appends into one
    /// group. Waits while the queue is full.
    pub fn submit(&self, submission: Submission, inline: bool) {
        let mut queue = self.lock();
        while queue.waiting.len() >= self.queue_max && !queue.closed {
            queue.blocked += 1;
            queue = self.room.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.blocked -= 1;
        }
        if queue.closed {
            drop(queue);
            return (submission.reply)(Err(Error::Closed));
        }
        queue.waiting.push_back(submission);
        match queue.baton {
            Baton::Caller => {}
            Baton::Thread if self.batch_delay.is_zero() => {}
            // The sequencer thread may be waiting for its batch to fill.
            Baton::Thread => self.handoff.notify_one(),
            Baton::Free if !inline || !self.batch_delay.is_zero() => {
                queue.baton = Baton::Thread;
                self.handoff.notify_one();
            }
            Baton::Free => {
                queue.baton = Baton::Caller;
                let batch = self.take_batch(&mut queue);
                drop(queue);
                let zeros_due = self.commit(batch);
                self.release_caller_baton(zeros_due);
            }
        }
    }

    /// After a caller's batch: the baton goes back, or to the sequencer
    /// thread when more has queued or zeros are due (writing them is not
    /// the caller's business: its answer would wait).
    fn release_caller_baton(&self, zeros_due: bool) {
        let mut queue = self.lock();
        debug_assert_eq!(queue.baton, Baton::Caller);
        queue.zeros_due |= zeros_due;
        if queue.waiting.is_empty() && !queue.zeros_due {
            queue.baton = Baton::Free;
            if queue.closed {
                // The sequencer thread waits for the baton to exit.
                self.handoff.notify_all();
            }
        } else {
            queue.baton = Baton::Thread;
            self.handoff.notify_one();
        }
    }

    /// Takes up to `batch_max` queued submissions and makes room for
    /// waiting submitters.
    fn take_batch(&self, queue: &mut Queue) -> Vec<Submission> {
        let count = queue.waiting.len().min(self.batch_max);
        let batch: Vec<Submission> = queue.waiting.drain(..count).collect();
        if queue.blocked > 0 {
            self.room.notify_all();
        }
        batch
    }

    /// Commits `batch`; whether the sequencer then wants zeros written
    /// ahead.
    fn commit(&self, batch: Vec<Submission>) -> bool {
        let mut sequencer = self.lock_sequencer();
        if !batch.is_empty() {
            sequencer.process(batch);
        }
        sequencer.wants_zeros()
    }

    fn lock_sequencer(&self) -> MutexGuard<'_, Sequencer> {
        self.sequencer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sequencer thread: commits whenever it holds the baton, until
    /// the intake is closed and drained; then syncs the log one last time.
    pub fn run(&self) {
        let mut queue = self.lock();
        loop {
            while queue.baton != Baton::Thread && !(queue.closed && queue.baton == Baton::Free) {
                queue = self.handoff.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if queue.baton == Baton::Free {
                // Closed: drain what is left, then stop.
                if queue.waiting.is_empty() {
                    break;
                }
                queue.baton = Baton::Thread;
            }
            if !queue.waiting.is_empty() {
                let mut batch = self.take_batch(&mut queue);
                queue = self.fill_during_delay(queue, &mut batch);
                drop(queue);
                let zeros_due = self.commit(batch);
                queue = self.lock();
                queue.zeros_due |= zeros_due;
            } else if queue.zeros_due && !queue.closed {
                // Idle: appends arriving now queue behind the zeros.
                queue.zeros_due = false;
                drop(queue);
                self.lock_sequencer().write_zeros_ahead();
                queue = self.lock();
            } else {
                queue.baton = Baton::Free;
            }
        }
        drop(queue);
        self.lock_sequencer().finish();
    }

    /// With a batch delay, waits up to that long after the first append of
    /// `batch` for more to queue.
    fn fill_during_delay<'a>(
        &'a self,
        mut queue: MutexGuard<'a, Queue>,
        batch: &mut Vec<Submission>,
    ) -> MutexGuard<'a, Queue> {
        if self.batch_delay.is_zero() {
            return queue;
        }
        let deadline = Instant::now() + self.batch_delay;
        while batch.len() < self.batch_max && !queue.closed {
            let room = self.batch_max - batch.len();
            let count = queue.waiting.len().min(room);
            batch.extend(queue.waiting.drain(..count));
            if batch.len() >= self.batch_max {
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            queue = self.handoff.wait_timeout(queue, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        if queue.blocked > 0 {
            self.room.notify_all();
        }
        queue
    }

    /// Refuses new submissions; the sequencer thread commits what queued
    /// and exits.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        self.handoff.notify_all();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;
    use std::sync::{Arc, Barrier};

    use crate::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, ProposedEvent, Store, StreamName};

    fn request(stream: &str) -> AppendRequest {
        let event = ProposedEvent::new(EventType::new("Happened").unwrap(), b"{}".to_vec());
        AppendRequest::to_stream(StreamName::new(stream).unwrap(), ExpectedRevision::Any, vec![event])
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("unnamed").to_string()
    }

    /// A store whose first append holds the baton (inside its reply)
    /// until the returned sender is dropped or sent to.
    fn store_with_held_baton(options: Options) -> (tempfile::TempDir, Arc<Store>, Holder) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), options).unwrap());
        let (release, released) = mpsc::channel::<()>();
        let in_reply = Arc::new(Barrier::new(2));
        let holder = Arc::clone(&store);
        let entered = Arc::clone(&in_reply);
        let thread = std::thread::spawn(move || {
            holder.submit_inline(request("holder-1"), move |_| {
                entered.wait();
                let _ = released.recv();
            });
        });
        in_reply.wait();
        (dir, store, Holder { release, thread })
    }

    /// The thread holding the baton, and what lets it go.
    struct Holder {
        release: mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Holder {
        /// Lets the baton go and waits until the holder's submit returned.
        fn release(self) {
            self.release.send(()).unwrap();
            self.thread.join().unwrap();
        }
    }

    #[test]
    fn an_idle_store_commits_on_the_callers_thread_before_submit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let (sender, answers) = mpsc::channel();
        store.submit_inline(request("idle-1"), move |outcome| {
            sender.send((thread_name(), outcome)).unwrap();
        });
        let (thread, outcome) = answers.try_recv().expect("answered before submit returned");
        assert_eq!(thread, thread_name());
        assert!(matches!(outcome, Ok(AppendOutcome::Written(_))));
        let stats = store.commit_stats();
        assert_eq!((stats.groups, stats.appends, stats.events), (1, 1, 1));
        assert!(stats.cpu_ns > 0, "committing took some CPU time");
    }

    #[test]
    fn a_queued_submit_is_committed_by_the_sequencer_thread_even_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let (sender, answers) = mpsc::channel();
        for n in 0..3 {
            let sender = sender.clone();
            store.submit(request(&format!("queued-{n}")), move |outcome| {
                sender.send((thread_name(), outcome)).unwrap();
            });
        }
        for (thread, outcome) in answers.iter().take(3) {
            assert_eq!(thread, "quipu-sequencer");
            assert!(matches!(outcome, Ok(AppendOutcome::Written(_))));
        }
    }

    #[test]
    fn appends_queued_behind_a_committing_caller_go_to_the_sequencer_thread() {
        let (_dir, store, release) = store_with_held_baton(Options::default());
        let (sender, answers) = mpsc::channel();
        store.submit(request("queued-1"), move |outcome| {
            sender.send((thread_name(), outcome)).unwrap();
        });
        assert!(answers.try_recv().is_err(), "queued, not committed, while another caller commits");
        release.release();
        let (thread, outcome) = answers.recv().unwrap();
        assert_eq!(thread, "quipu-sequencer");
        assert!(matches!(outcome, Ok(AppendOutcome::Written(_))));
    }

    #[test]
    fn a_full_queue_holds_submitters_back_until_there_is_room() {
        let options = Options { queue_appends_max: 1, ..Options::default() };
        let (_dir, store, release) = store_with_held_baton(options);
        let (answer, answers) = mpsc::channel();
        let queued_answer = answer.clone();
        store.submit(request("queued-1"), move |outcome| queued_answer.send(outcome).unwrap());
        let (sender, submitted) = mpsc::channel();
        let late = Arc::clone(&store);
        let waiter = std::thread::spawn(move || {
            late.submit(request("late-1"), move |outcome| answer.send(outcome).unwrap());
            sender.send(()).unwrap();
        });
        assert!(
            submitted.recv_timeout(std::time::Duration::from_millis(200)).is_err(),
            "the queue is full: the submitter waits"
        );
        release.release();
        submitted.recv().unwrap();
        waiter.join().unwrap();
        assert_eq!(answers.iter().take(2).filter(|o| matches!(o, Ok(AppendOutcome::Written(_)))).count(), 2);
        let events = store.read_all(None, crate::Direction::Forwards, 10).unwrap();
        let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
        assert_eq!(streams, ["holder-1", "queued-1", "late-1"]);
    }

    #[test]
    fn closing_answers_every_queued_append() {
        let (_dir, store, release) = store_with_held_baton(Options::default());
        let (sender, answers) = mpsc::channel();
        for n in 0..5 {
            let sender = sender.clone();
            store.submit(request(&format!("queued-{n}")), move |outcome| sender.send(outcome).unwrap());
        }
        drop(sender);
        release.release();
        let store = Arc::into_inner(store).expect("only the test holds the store");
        store.close().unwrap();
        let outcomes: Vec<_> = answers.iter().collect();
        assert_eq!(outcomes.len(), 5);
        assert!(outcomes.iter().all(|o| matches!(o, Ok(AppendOutcome::Written(_)))));
    }
}
